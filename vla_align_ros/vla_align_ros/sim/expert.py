"""A scripted expert that knows its phases: it turns subgoals into Cartesian waypoints and
drives them with end-effector twists, the way a servo-controlled real arm is driven."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .env import TabletopEnv
from .kinematics import DOWN, rotation_error
from .scene import CUBE_HALF, GRIPPER_MAX
from .tasks import Subgoal, top_z

LIFT_Z = 0.16  # transport height of the end effector, m
APPROACH_DZ = 0.10
MAX_SPEED = 0.25  # m/s
GAIN = 4.0  # 1/s, proportional gain on the position error
ROT_GAIN = 3.0
TOL = 0.006  # m
# The end-effector site sits 5 cm above the fingertips: grasp with it this far above the
# object's centre so the fingertips stay clear of the table.
GRASP_DZ = 0.03


@dataclass
class ExpertAction:
    twist: np.ndarray  # (6,) [vx vy vz wx wy wz]
    gripper: float  # commanded opening, m
    phase: str  # approach, descend, grasp, lift, transport, place, release, retreat, push
    step_index: int  # which instruction step this belongs to


@dataclass
class _Waypoint:
    phase: str
    target: np.ndarray | None  # None: stay (wait for the gripper)
    gripper: float
    wait: int = 0  # control steps to hold once reached
    max_steps: int = 80


class ScriptedExpert:
    """Yields one action per control step until the task's waypoints are exhausted."""

    def __init__(self, env: TabletopEnv) -> None:
        self.env = env

    def _waypoints(self, goal: Subgoal) -> list[tuple[str, "callable"]]:
        env = self.env

        def above(name: str, dz: float) -> np.ndarray:
            p = env.object_position(name)
            return np.array([p[0], p[1], p[2] + top_z(name) + dz])

        plan: list = []
        if goal.kind in ("pick", "place"):
            plan += [
                lambda: _Waypoint("approach", above(goal.obj, APPROACH_DZ), GRIPPER_MAX),
                lambda: _Waypoint("descend", env.object_position(goal.obj) + [0, 0, GRASP_DZ], GRIPPER_MAX),
                lambda: _Waypoint("grasp", None, 0.0, wait=10),
                lambda: _Waypoint("lift", np.r_[env.ee_position()[:2], LIFT_Z], 0.0),
            ]
        if goal.kind == "place":
            plan += [
                lambda: _Waypoint("transport", np.r_[env.object_position(goal.target)[:2], LIFT_Z], 0.0, max_steps=120),
                lambda: _Waypoint("place", above(goal.target, CUBE_HALF + GRASP_DZ + 0.004), 0.0),
                lambda: _Waypoint("release", None, GRIPPER_MAX, wait=8),
                lambda: _Waypoint("retreat", np.r_[env.ee_position()[:2], LIFT_Z], GRIPPER_MAX),
            ]
        if goal.kind == "push":
            d = goal.direction

            def start() -> np.ndarray:
                p = env.object_position(goal.obj)
                return np.array([p[0], p[1] - d * 0.075, APPROACH_DZ])

            plan += [
                lambda: _Waypoint("approach", start(), 0.0),
                lambda: _Waypoint("descend", np.r_[start()[:2], CUBE_HALF + GRASP_DZ], 0.0),
                lambda: _Waypoint("push", np.r_[env.ee_position()[0], env.ee_position()[1] + d * 0.13, CUBE_HALF + GRASP_DZ],
                                  0.0, max_steps=100),
                lambda: _Waypoint("retreat", np.r_[env.ee_position()[:2], LIFT_Z], 0.0),
            ]
        return plan

    def actions(self) -> Iterator[ExpertAction]:
        task = self.env.task
        if task is None:
            raise RuntimeError("reset the environment before running the expert")
        for gi, goal in enumerate(task.subgoals):
            for make in self._waypoints(goal):
                wp = make()  # evaluated when the phase starts, from the current state
                step_index = self._step_index(task.family, gi, wp.phase)
                reached_for = 0
                for _ in range(wp.max_steps):
                    ee = self.env.ee_position()
                    twist = np.zeros(6)
                    if wp.target is not None:
                        err = wp.target - ee
                        v = GAIN * err
                        speed = np.linalg.norm(v)
                        if speed > MAX_SPEED:
                            v *= MAX_SPEED / speed
                        twist[:3] = v
                        done = np.linalg.norm(err) < TOL
                    else:
                        done = True
                    twist[3:] = ROT_GAIN * rotation_error(self.env.ee_rotation(), DOWN)
                    yield ExpertAction(twist=twist, gripper=wp.gripper, phase=wp.phase, step_index=step_index)
                    if done:
                        reached_for += 1
                        if reached_for > wp.wait:
                            break

    @staticmethod
    def _step_index(family: str, goal_index: int, phase: str) -> int:
        if family == "pick_then_place":
            return 0 if phase in ("approach", "descend", "grasp", "lift") else 1
        if family == "place_two":
            return goal_index
        return 0


def run_expert(env: TabletopEnv, on_step=None) -> bool:
    """Run the expert to the end of its plan; ``on_step(action)`` is called after each step.
    Returns the task's success."""
    for action in ScriptedExpert(env).actions():
        env.command_twist(action.twist)
        env.command_gripper(action.gripper)
        env.step()
        if on_step is not None:
            on_step(action)
    for _ in range(10):  # let things come to rest before judging
        env.step()
    return env.success()
