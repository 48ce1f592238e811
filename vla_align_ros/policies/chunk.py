"""The learned action-chunk head as a policy: each frame the model predicts the next H actions
(end-effector twist and gripper), and overlapping predictions for the same control step are
averaged with exponentially decaying weights, oldest first (ACT's temporal ensembling)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

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


class ChunkPolicy(Policy):
    name = "chunk"

    def __init__(self, session: Any, robot: RobotInterface, decay: float = 0.1, steps_per_frame: int = 2) -> None:
        self.session, self.robot = session, robot
        self.decay = decay
        self.steps_per_frame = steps_per_frame  # control steps between camera frames
        self._chunks: deque[tuple[int, np.ndarray]] = deque(maxlen=session.horizon)
        self._t = 0

    def reset(self, instruction: str) -> str:
        self.session.set_instruction(instruction)
        self._chunks.clear()
        self._t = 0
        return "learned action chunks with temporal ensembling"

    def act(self, obs: Observation) -> ActionChunk:
        pred = self.session.step(obs.image, obs.state).actions  # (H, A)
        self._chunks.append((self._t, np.asarray(pred, dtype=np.float64)))
        rows = [ensemble(list(self._chunks), self._t + k, self.decay) for k in range(len(pred))]
        self._t += self.steps_per_frame
        return ActionChunk(np.stack(rows).astype(np.float32), phase="chunk")
