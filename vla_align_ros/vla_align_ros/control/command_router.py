"""One row of an action chunk -> what goes to the arm for one control period.

policy_node and the in-process rollout (``sim.rollout``) send chunks through this one object, so
the arm sees the same commands in both:

- an end-effector twist row ([vx vy vz wx wy wz], then the gripper) passes the twist filter and
  goes out as that twist, or in ``joint_trajectory`` mode through the IK joint stream
  (``JointTargetStream.from_twist``) as a joint target;
- a ``joint_delta`` row (a joint-space checkpoint: target minus measured per joint, then the
  gripper) goes only to the joint stream, never out as a twist;
- a row a filter drops, a row in a space this mode cannot carry, and a row in an unknown space
  become a hold, with the reason.

Pure NumPy: no ROS, no simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..model.action_space import EE_TWIST_GRIPPER, JOINT_DELTA
from .joint_stream import JointTargetStream
from .safety import FilterResult, Outcome, TwistLimits, filter_gripper, filter_twist

COMMAND_MODES = ("twist", "joint_trajectory")
EE_TWIST_SPACES = ("ee_twist", EE_TWIST_GRIPPER)  # a policy's twist rows, a checkpoint's twist space

# Why a row became a hold (``Routed.hold``).
DROPPED_TWIST = "dropped_twist"  # the twist filter dropped it
DROPPED_JOINT_TARGET = "dropped_joint_target"  # the joint-target filter dropped its target
SPACE_MISMATCH = "action_space_mismatch"  # joint deltas in twist mode
SPACE_UNKNOWN = "action_space_unknown"


@dataclass(frozen=True)
class Routed:
    """What one row becomes: exactly one of ``twist``, ``joint_target`` or ``hold``."""

    twist: np.ndarray | None = None  # (6,) filtered twist in the base frame
    joint_target: np.ndarray | None = None  # (J,) filtered joint positions, reached in one period
    gripper: float | None = None  # filtered gripper command, when the row has one (only with motion)
    hold: str | None = None  # why the arm holds instead (one of the constants above)
    detail: str = ""  # the hold's reason in words, for the log
    results: tuple[FilterResult, ...] = ()  # every filter result, for the safety counters


class CommandRouter:
    """Routes chunk rows for one command mode. Keeps the previous twist (the twist filter bounds
    the change per period) and the joint stream's reference; ``reset`` after every hold."""

    def __init__(self, mode: str, stream: JointTargetStream, twist_limits: TwistLimits,
                 gripper_range: tuple[float, float]) -> None:
        if mode not in COMMAND_MODES:
            raise ValueError(f"command_mode={mode!r}: use one of {COMMAND_MODES}")
        self.mode = mode
        self.stream = stream
        self.twist_limits = twist_limits
        self.gripper_range = gripper_range
        self.prev_twist: np.ndarray | None = None

    def reset(self) -> None:
        """After a hold: the twist filter starts from rest, the joint stream from the measured position."""
        self.prev_twist = None
        self.stream.reset()

    def route(self, row: np.ndarray, space: str, dims: Sequence[str], measured: np.ndarray,
              ee_position: np.ndarray, dt: float) -> Routed:
        """``row``: (A,) one chunk row in ``space`` with dimension names ``dims`` (may be empty);
        ``measured``: (J,) the arm's joint positions in the stream's order; ``ee_position``: (3,)
        the end effector in the base frame; ``dt``: the control period (s)."""
        n_joints = len(self.stream.names)
        results: list[FilterResult] = []
        twist = target = None
        if space == JOINT_DELTA:
            if self.mode != "joint_trajectory":
                return Routed(hold=SPACE_MISMATCH, detail=f"a {space} chunk cannot be sent as a twist")
            jr = self.stream.from_delta(row[:n_joints], measured, dt)
            grip = n_joints
        elif space in EE_TWIST_SPACES:
            r = filter_twist(row[:6], ee_position, self.prev_twist, self.twist_limits, dt)
            results.append(r)
            if r.outcome is Outcome.DROPPED:
                return Routed(hold=DROPPED_TWIST, detail=f"dropped command ({', '.join(r.reasons)})",
                              results=tuple(results))
            self.prev_twist = r.command
            jr = None if self.mode == "twist" else self.stream.from_twist(r.command, measured, dt)
            twist = r.command if jr is None else None
            grip = 6
        else:
            return Routed(hold=SPACE_UNKNOWN, detail=f"chunk in action space {space!r}: not sent")
        if jr is not None:
            results.append(jr)
            if jr.outcome is Outcome.DROPPED:
                return Routed(hold=DROPPED_JOINT_TARGET, detail=f"dropped joint target ({', '.join(jr.reasons)})",
                              results=tuple(results))
            target = np.asarray(jr.command, dtype=float)
        gripper = None
        if row.shape[0] > grip and (len(dims) <= grip or dims[grip] == "gripper"):
            g = filter_gripper(float(row[grip]), *self.gripper_range)
            results.append(g)
            gripper = None if g.command is None else float(g.command[0])
        return Routed(twist=twist, joint_target=target, gripper=gripper, results=tuple(results))
