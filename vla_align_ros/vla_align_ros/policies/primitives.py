"""Generic motion primitives: approach, descend, grasp, lift, transport, release, retreat and
push, as a stream of end-effector twists toward 3D waypoints in the robot's base frame. The
waypoints come from the model (where to act) and from the demonstrations (heights, the hand's
orientation, how far a push goes); nothing here knows an object or a simulator. Pure NumPy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np


def rotation_log(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> axis-angle vector (3,) (the rotation's logarithm)."""
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if angle < 1e-6:
        return 0.5 * axis
    if np.pi - angle < 1e-4:  # near a half turn: the axis from the symmetric part
        w, v = np.linalg.eigh(0.5 * (r + r.T))
        return angle * v[:, int(np.argmax(w))]
    return angle / (2.0 * np.sin(angle)) * axis


@dataclass(frozen=True)
class ServoGains:
    """The proportional servo that drives the hand to a waypoint."""

    gain: float = 4.0  # 1/s on the position error
    rot_gain: float = 3.0  # 1/s on the orientation error
    max_speed: float = 0.25  # m/s
    tolerance: float = 0.006  # m: a waypoint is reached within this


@dataclass(frozen=True)
class Waypoint:
    phase: str
    target: np.ndarray | None  # (3,) base frame; None: stay where the hand is (for the gripper)
    gripper: float  # commanded opening, m
    wait: int = 0  # steps to hold once reached
    max_steps: int = 80


@dataclass(frozen=True)
class PrimitiveStep:
    twist: np.ndarray  # (6,)
    gripper: float
    phase: str


def drive(waypoints: Iterator[Callable[[], Waypoint]], ee_pose: Callable[[], tuple[np.ndarray, np.ndarray]],
          orientation: np.ndarray, gains: ServoGains = ServoGains()) -> Iterator[PrimitiveStep]:
    """One twist per control step toward each waypoint in turn (each made when its phase starts,
    from the state then), holding the hand at ``orientation`` (3, 3)."""
    for make in waypoints:
        wp = make()
        reached = 0
        for _ in range(wp.max_steps):
            pos, rot = ee_pose()
            twist = np.zeros(6)
            done = True
            if wp.target is not None:
                err = wp.target - pos
                v = gains.gain * err
                speed = float(np.linalg.norm(v))
                if speed > gains.max_speed:
                    v *= gains.max_speed / speed
                twist[:3] = v
                done = float(np.linalg.norm(err)) < gains.tolerance
            twist[3:] = gains.rot_gain * rotation_log(orientation @ rot.T)
            yield PrimitiveStep(twist, wp.gripper, wp.phase)
            if done:
                reached += 1
                if reached > wp.wait:
                    break


def pick_waypoints(pick: np.ndarray, grasp_z: float, lift_z: float, opened: float, closed: float,
                   ee_pose: Callable[[], tuple[np.ndarray, np.ndarray]]) -> list[Callable[[], Waypoint]]:
    """Approach above ``pick`` (x, y), descend to ``grasp_z``, close, lift to ``lift_z``."""
    return [lambda: Waypoint("approach", np.r_[pick[:2], lift_z], opened),
            lambda: Waypoint("descend", np.r_[pick[:2], grasp_z], opened),
            lambda: Waypoint("grasp", None, closed, wait=10),
            lambda: Waypoint("lift", np.r_[ee_pose()[0][:2], lift_z], closed)]


def place_waypoints(place: np.ndarray, release_z: float, lift_z: float, opened: float, closed: float,
                    ee_pose: Callable[[], tuple[np.ndarray, np.ndarray]]) -> list[Callable[[], Waypoint]]:
    """Carry to above ``place`` (x, y), lower to ``release_z``, open, retreat up to ``lift_z``."""
    return [lambda: Waypoint("transport", np.r_[place[:2], lift_z], closed, max_steps=120),
            lambda: Waypoint("place", np.r_[place[:2], release_z], closed),
            lambda: Waypoint("release", None, opened, wait=8),
            lambda: Waypoint("retreat", np.r_[ee_pose()[0][:2], lift_z], opened)]


def push_waypoints(start: np.ndarray, push: np.ndarray, push_z: float, lift_z: float, closed: float,
                   ee_pose: Callable[[], tuple[np.ndarray, np.ndarray]]) -> list[Callable[[], Waypoint]]:
    """Approach above ``start`` (x, y), lower the closed hand to ``push_z``, move by ``push``
    (dx, dy) along the table, retreat up to ``lift_z``."""
    return [lambda: Waypoint("approach", np.r_[start[:2], lift_z], closed),
            lambda: Waypoint("descend", np.r_[start[:2], push_z], closed),
            lambda: Waypoint("push", np.r_[ee_pose()[0][:2] + push[:2], push_z], closed, max_steps=100),
            lambda: Waypoint("retreat", np.r_[ee_pose()[0][:2], lift_z], closed)]
