"""The learned action-chunk head as a policy: each frame the model predicts the next H actions
(in the action space the checkpoint was trained on: an end-effector twist and gripper, or joint
deltas), and overlapping predictions for the same control step are averaged with exponentially
decaying weights, oldest first (ACT's temporal ensembling). Its chunks declare that space, so
whoever sends them to an arm knows what the numbers are."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ..model.action_space import ActionSpace, ActionSpaceError
from .base import ActionChunk, Observation, Policy
from .robot import RobotInterface


def ensemble(chunks: list[tuple[int, np.ndarray]], now: int, decay: float) -> np.ndarray | None:
    """Chunks [(step they start at, (H, A))] -> the weighted mean of their rows for step ``now``:
    weight exp(-decay * i) for the i-th oldest chunk that covers ``now``."""
    rows = [c[now - s] for s, c in chunks if 0 <= now - s < len(c)]
    if not rows:
        return None
    w = np.exp(-decay * np.arange(len(rows)))
    return (w[:, None] * np.stack(rows)).sum(0) / w.sum()


def checkpoint_action_space(checkpoint_dir: str | Path | None) -> tuple[ActionSpace, str]:
    """The action space a checkpoint folder's ``config.json`` records (``metadata["action_space"]``)
    and where it came from. A checkpoint that records none (an in-memory model, or one saved
    without metadata) is taken as the original twist space, and the account says so."""
    if checkpoint_dir is None:
        return ActionSpace.ee_twist_gripper("world"), "not recorded (a model object): assumed ee_twist_gripper"
    cfg = Path(checkpoint_dir) / "config.json"
    try:
        meta = json.loads(cfg.read_text()).get("metadata") or {}
    except (OSError, json.JSONDecodeError) as e:
        raise ActionSpaceError(f"{cfg}: cannot read the checkpoint's metadata ({e})") from e
    if "action_space" not in meta:
        return ActionSpace.ee_twist_gripper("world"), f"not recorded in {cfg}: assumed ee_twist_gripper"
    return ActionSpace.from_metadata(meta["action_space"]), f"from {cfg}"


class ChunkPolicy(Policy):
    name = "chunk"

    def __init__(self, session: Any, robot: RobotInterface, decay: float = 0.1, steps_per_frame: int = 2) -> None:
        self.session, self.robot = session, robot
        self.decay = decay
        self.steps_per_frame = steps_per_frame  # control steps between camera frames
        self._chunks: deque[tuple[int, np.ndarray]] = deque(maxlen=session.horizon)
        self._t = 0
        self.space, self.space_source = checkpoint_action_space(getattr(session, "checkpoint_dir", None))
        self.action_space = self.space.kind
        action_dim = session.model.cfg.action.action_dim
        if action_dim and action_dim != self.space.dim:
            raise ActionSpaceError(f"the checkpoint's action head has {action_dim} dimensions but its action space "
                                   f"{self.space.describe()} has {self.space.dim}")

    def reset(self, instruction: str) -> str:
        self.session.set_instruction(instruction)
        self._chunks.clear()
        self._t = 0
        return "learned action chunks with temporal ensembling"

    def act(self, obs: Observation) -> ActionChunk:
        pred = self.session.step(obs.image, obs.state, key=obs.frame).actions  # (H, A)
        self._chunks.append((self._t, np.asarray(pred, dtype=np.float64)))
        rows = [ensemble(list(self._chunks), self._t + k, self.decay) for k in range(len(pred))]
        self._t += self.steps_per_frame
        return ActionChunk(np.stack(rows).astype(np.float32), space=self.space.kind, dims=self.space.names,
                           phase="chunk")
