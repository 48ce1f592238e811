"""Validation of commands sent to the simulated arm (pure; the node counts and logs rejections).

A rejected command never moves the arm: the node holds position instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .scene import GRIPPER_MAX, WORKSPACE_HIGH, WORKSPACE_LOW

MAX_LINEAR = 0.5  # m/s
MAX_ANGULAR = 2.0  # rad/s


class CommandRejected(ValueError):
    """``reason`` is a short machine-readable key for counting, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_twist(twist: Sequence[float], ee_position: np.ndarray, dt: float,
                max_linear: float = MAX_LINEAR, max_angular: float = MAX_ANGULAR) -> np.ndarray:
    t = np.asarray(twist, dtype=float)
    if t.shape != (6,):
        raise CommandRejected("bad_size", f"twist needs 6 values, got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise CommandRejected("non_finite", f"twist has NaN/Inf: {t.tolist()}")
    if np.linalg.norm(t[:3]) > max_linear or np.linalg.norm(t[3:]) > max_angular:
        raise CommandRejected("over_limit", f"twist |v|={np.linalg.norm(t[:3]):.3f} m/s, |w|={np.linalg.norm(t[3:]):.3f} "
                                            f"rad/s exceeds {max_linear} m/s / {max_angular} rad/s")
    nxt = ee_position + t[:3] * dt
    if np.any(nxt < WORKSPACE_LOW) or np.any(nxt > WORKSPACE_HIGH):
        # Allow motion that heads back into the workspace from outside it.
        outside_now = np.maximum(WORKSPACE_LOW - ee_position, 0) + np.maximum(ee_position - WORKSPACE_HIGH, 0)
        outside_next = np.maximum(WORKSPACE_LOW - nxt, 0) + np.maximum(nxt - WORKSPACE_HIGH, 0)
        if np.linalg.norm(outside_next) > np.linalg.norm(outside_now):
            raise CommandRejected("workspace", f"twist would move the end effector to {np.round(nxt, 3).tolist()}, "
                                               f"outside the workspace {WORKSPACE_LOW.tolist()}..{WORKSPACE_HIGH.tolist()}")
    return t


@dataclass
class JointTrajectoryPlan:
    times: np.ndarray  # (P,) seconds from start, increasing
    positions: np.ndarray  # (P, 7) in the arm's joint order

    def sample(self, t: float, start_q: np.ndarray) -> np.ndarray:
        """Linear interpolation from ``start_q`` at t=0 through the points; holds the last."""
        times = np.r_[0.0, self.times]
        pts = np.vstack([start_q, self.positions])
        if t >= times[-1]:
            return pts[-1].copy()
        return np.array([np.interp(t, times, pts[:, j]) for j in range(pts.shape[1])])


@dataclass
class ActiveTrajectory:
    """A JointTrajectory being executed the way joint_trajectory_controller runs one:
    ``time_from_start`` counts from ``start_time`` (the header stamp; a zero stamp means on
    receipt), the stretch before the first point interpolates from ``start_q`` (the position the
    arm was *commanded* to when the trajectory arrived, so a stream of short trajectories
    continues the motion instead of restarting from the lagging measured position), and the last
    point is held once reached."""

    plan: JointTrajectoryPlan
    start_time: float  # simulation seconds at which time_from_start is zero
    start_q: np.ndarray  # (7,) commanded position when it arrived

    @property
    def end_time(self) -> float:
        return self.start_time + float(self.plan.times[-1])

    def target(self, t: float) -> np.ndarray:
        """The desired joint positions at simulation time ``t`` (a control period's end)."""
        return self.plan.sample(t - self.start_time, self.start_q)


def start_trajectory(plan: JointTrajectoryPlan, now: float, stamp_offset: float,
                     commanded_q: np.ndarray) -> ActiveTrajectory:
    """``plan`` received at simulation time ``now``, its header stamp ``stamp_offset`` seconds from
    now (negative: stamped in the past; 0 for a zero stamp). A trajectory whose every point lies
    in the past is rejected (``late``), as joint_trajectory_controller rejects it; the caller then
    keeps executing what it had."""
    start = now + float(stamp_offset)
    active = ActiveTrajectory(plan, start, np.asarray(commanded_q, dtype=float).copy())
    if not np.isfinite(start):
        raise CommandRejected("non_finite", f"header stamp offset {stamp_offset}")
    if active.end_time <= now:
        raise CommandRejected("late", f"the trajectory ended {now - active.end_time:.3f} s before it arrived "
                                      f"(stamp {stamp_offset:+.3f} s, last point at {plan.times[-1]:.3f} s)")
    return active


def check_joint_trajectory(names: Sequence[str], points: Sequence[tuple[Sequence[float], float]],
                           expected_names: Sequence[str], lower: np.ndarray, upper: np.ndarray) -> JointTrajectoryPlan:
    """names: the message's joint names; points: (positions, time_from_start seconds)."""
    if sorted(names) != sorted(expected_names) or len(set(names)) != len(names):
        raise CommandRejected("joint_names", f"joint names {list(names)} do not match the arm's {list(expected_names)}")
    if not points:
        raise CommandRejected("empty", "trajectory has no points")
    order = [list(names).index(n) for n in expected_names]
    times, rows = [], []
    for i, (pos, tfs) in enumerate(points):
        p = np.asarray(pos, dtype=float)
        if p.shape != (len(names),):
            raise CommandRejected("bad_size", f"point {i} has {p.size} positions for {len(names)} joints")
        if not np.all(np.isfinite(p)) or not np.isfinite(tfs):
            raise CommandRejected("non_finite", f"point {i} has NaN/Inf")
        q = p[order]
        if np.any(q < lower - 1e-6) or np.any(q > upper + 1e-6):
            raise CommandRejected("joint_limits", f"point {i} is outside the joint limits")
        times.append(float(tfs))
        rows.append(q)
    t = np.array(times)
    if np.any(np.diff(t) <= 0) or t[0] < 0:
        raise CommandRejected("time_order", f"time_from_start must increase, got {t.tolist()}")
    return JointTrajectoryPlan(times=t, positions=np.vstack(rows))


def check_gripper(width: float) -> float:
    if not np.isfinite(width):
        raise CommandRejected("non_finite", f"gripper width {width}")
    if width < -1e-6 or width > GRIPPER_MAX + 1e-6:
        raise CommandRejected("over_limit", f"gripper width {width:.4f} m outside [0, {GRIPPER_MAX}]")
    return float(np.clip(width, 0.0, GRIPPER_MAX))


@dataclass
class RejectionCounter:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, reason: str) -> int:
        key = f"{topic}:{reason}"
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    @property
    def total(self) -> int:
        return sum(self.counts.values())
