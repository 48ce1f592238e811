"""How many times the gripper has closed and opened since the instruction: the history a single
frame cannot show ("put A on B and then C on D" is in its second step once the gripper has let go
of A). Pure, no ROS; the same counter runs over a recording and frame by frame online."""

from __future__ import annotations

import numpy as np

CLOSED_BELOW = 0.75  # closed: opening under this fraction of the widest opening seen so far
OPEN_ABOVE = 0.9  # open again: opening over this fraction (hysteresis between the two)


class GripperEvents:
    """Streaming counter: ``update(opening)`` per frame -> (grasps, releases) so far. The gripper
    is taken as open at the start; the widest opening seen so far is the reference, so no robot's
    finger range needs configuring."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.widest = 0.0
        self.closed = False
        self.grasps = 0
        self.releases = 0

    def update(self, opening: float) -> tuple[int, int]:
        if not np.isfinite(opening):
            return self.grasps, self.releases  # a bad reading changes nothing
        self.widest = max(self.widest, float(opening))
        if not self.closed and opening < CLOSED_BELOW * self.widest:
            self.closed, self.grasps = True, self.grasps + 1
        elif self.closed and opening > OPEN_ABOVE * self.widest:
            self.closed, self.releases = False, self.releases + 1
        return self.grasps, self.releases


def gripper_events(opening: np.ndarray) -> np.ndarray:
    """(T,) finger opening of one episode in time order -> (T, 2) float32 [grasps, releases] so
    far at each frame (the frame's own change included)."""
    counter = GripperEvents()
    return np.array([counter.update(float(o)) for o in opening], dtype=np.float32).reshape(-1, 2)


def gripper_opening(state: np.ndarray, gripper_dims: int) -> np.ndarray:
    """(..., S) joint positions whose last ``gripper_dims`` are the fingers -> (...,) opening
    (their sum; zeros when the robot state has no fingers)."""
    if gripper_dims <= 0:
        return np.zeros(state.shape[:-1], dtype=np.float32)
    return state[..., -gripper_dims:].sum(-1)
