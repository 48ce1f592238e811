"""Joint targets streamed to a joint_trajectory_controller, one short trajectory per control
cycle, from either an end-effector twist (through the robot's IK) or a model's joint deltas.

A position-controlled arm lags its command (the simulated Panda by about 0.1 s). Restarting
every cycle's target from the *measured* position therefore asks for one cycle's worth of motion
from a joint that covers only a fraction of it before the next restart, and the arm barely
moves. A servo integrates instead: each twist target continues from the last target sent (the
reference), and the safety filter (``filter_joint_target``) bounds how far that reference may
lead the measured position (``max_velocity * dt``), the change per cycle (``max_step``) and the
joint limits. Those bounds are per joint; an arm held back by contact (fingertips pressed on the
table while the twist keeps asking for a little more depth) could still leave the reference's end
effector centimetres away from the real one, every joint at its lead bound, and the arm stalled.
So when the reference's end effector is more than ``max_ee_lead`` from the measured one, the
reference restarts from the measured position (counted in ``rebased``). After a hold the
reference restarts from the measured position too.

Pure NumPy and the robot description's kinematics: no ROS, no simulator. policy_node and the
in-process rollout (``sim.rollout``) run the same object.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .safety import FilterResult, JointLimits, Outcome, filter_joint_target


class JointTargetStream:
    """The joint reference of a streaming joint-trajectory command path.

    ``kinematics``: anything with ``twist_to_joint_delta(q, names, twist, dt)`` (``robots.RobotKinematics``);
    ``joint_names``: the commanded joints, in the order of every ``q`` given here; ``limits``: the
    joint-target safety limits, same order."""

    def __init__(self, kinematics: Any, joint_names: Sequence[str], limits: JointLimits,
                 max_ee_lead: float = 0.03) -> None:
        if list(limits.names) != list(joint_names):
            raise ValueError(f"joint limits are for {limits.names}, the stream commands {list(joint_names)}")
        self.kin = kinematics
        self.names = list(joint_names)
        self.limits = limits
        # m; the simulated Panda lags about 0.1 s, 2.5 cm at the 0.25 m/s speed limit
        self.max_ee_lead = max_ee_lead
        self.reference: np.ndarray | None = None  # the last target sent (None: start from the measured position)
        self.rebased = 0  # restarts from the measured position because the reference ran away

    def reset(self) -> None:
        """After a hold: the next target starts from the measured position."""
        self.reference = None

    def _filtered(self, target: np.ndarray, measured: np.ndarray, dt: float) -> FilterResult:
        r = filter_joint_target(target, measured, self.reference, self.limits, dt)
        self.reference = None if r.outcome is Outcome.DROPPED else np.asarray(r.command, dtype=float).copy()
        return r

    def from_twist(self, twist: np.ndarray, measured: np.ndarray, dt: float) -> FilterResult:
        """The target that moves the end effector by ``twist`` (6,) (base frame, already through
        the twist filter) over ``dt`` s: the reference plus the IK joint change at the reference,
        through the joint-target filter. A dropped result (non-finite IK) clears the reference."""
        q = np.asarray(measured, dtype=float)
        if self.reference is not None and self.max_ee_lead > 0:
            lead = np.linalg.norm(self.kin.ee_pose(self.reference, self.names)[0] - self.kin.ee_pose(q, self.names)[0])
            if lead > self.max_ee_lead:
                self.reference = None
                self.rebased += 1
        base = q if self.reference is None else self.reference
        target = base + self.kin.twist_to_joint_delta(base, self.names, np.asarray(twist, dtype=float), dt)
        return self._filtered(target, q, dt)

    def from_delta(self, delta: np.ndarray, measured: np.ndarray, dt: float) -> FilterResult:
        """A model's ``joint_delta`` row: target = measured + delta (the space's definition:
        commanded target minus measured position), through the joint-target filter."""
        q = np.asarray(measured, dtype=float)
        d = np.asarray(delta, dtype=float).reshape(-1)
        if d.shape != q.shape:
            return FilterResult(None, Outcome.DROPPED, ["bad_size"])
        return self._filtered(q + d, q, dt)


def stream_limits(kinematics: Any, joint_names: Sequence[str], dt: float, max_velocity: float = 2.0) -> JointLimits:
    """The joint-target limits policy_node streams under: the description's position limits,
    ``max_velocity`` rad/s of lead over the measured position, and at most ``max_velocity * dt``
    change of the target per control cycle."""
    lower, upper = kinematics.limits(list(joint_names))
    return JointLimits(list(joint_names), lower.tolist(), upper.tolist(), [max_velocity] * len(joint_names),
                       max_step=max_velocity * dt)
