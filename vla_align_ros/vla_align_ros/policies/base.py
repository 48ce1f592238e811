"""The policy interface: ``reset(instruction)`` then ``act(observation)`` once per camera frame,
returning an action chunk in a declared action space. A policy that must not move the arm for
an instruction raises ``Refusal`` with the reason (from ``reset``, or from ``act`` once it has
looked). Pure Python; the ROS node and the in-process rollout drive the same objects."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EE_TWIST = "ee_twist"  # [vx vy vz wx wy wz] base frame (m/s, rad/s), then the gripper opening (m)
EE_TWIST_DIMS = ("vx", "vy", "vz", "wx", "wy", "wz", "gripper")


class Refusal(Exception):
    """The instruction must not move the arm: ``reason`` a short code for counters and status
    (``not_a_command``, ``unclear``, ``not_in_view``, ...), ``detail`` what the model saw."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Observation:
    image: np.ndarray  # (H, W, 3) uint8, the camera frame
    joints: np.ndarray  # (N,) arm joint positions, named by the robot interface's joint_names
    state: np.ndarray | None = None  # the model's state vector (joint_state.model_state), for learned chunks
    stamp: float = 0.0  # seconds
    frame: int | None = None  # the frame's identity (header stamp in ns): lets the session share one vision pass


@dataclass
class ActionChunk:
    actions: np.ndarray  # (H, A) one row per control step from now
    space: str = EE_TWIST
    dims: tuple[str, ...] = EE_TWIST_DIMS
    phase: str = ""  # what the policy is doing ("localise", "approach", ...)
    finishing: bool = False  # the instruction is achieved; only a retreat or nothing is left
    info: dict[str, Any] = field(default_factory=dict)


class Policy(ABC):
    """One instruction at a time. ``reset`` may raise ``Refusal``; so may ``act``."""

    name = ""
    action_space = EE_TWIST

    @abstractmethod
    def reset(self, instruction: str) -> str:
        """Start on ``instruction``; returns a one-line account of what it will do."""

    @abstractmethod
    def act(self, obs: Observation) -> ActionChunk:
        """The action chunk for this frame."""

    def close(self) -> None:
        """Release what the policy holds (nothing by default)."""
