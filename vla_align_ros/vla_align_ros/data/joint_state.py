"""Joint positions and velocities from joint-state messages, one rule for recordings and for
the running node: the velocities a message carries, or, where a recorder left them out (the
field is optional in sensor_msgs/JointState), the difference of the positions to the message
before over their stamps."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _recorded(velocity: np.ndarray, like: np.ndarray) -> bool:
    return velocity.shape == like.shape and bool(np.isfinite(velocity).all())


def joint_arrays(stamps: np.ndarray, values: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A joint-state stream, (N,) int64 stamps (sorted) and (positions, velocities) per message,
    -> positions (N, J) and velocities (N, J). A message whose velocities are missing (a recorder
    may leave the field empty), of the wrong length or not finite takes the difference of the
    positions to the message before it over their stamps (zero for the first message)."""
    if not values:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    sizes = sorted({len(p) for p, _ in values})
    if len(sizes) > 1:
        raise ValueError(f"joint_states messages carry {sizes} positions: one topic must name every joint")
    q = np.stack([p for p, _ in values]).astype(np.float32)  # (N, J)
    tracker = VelocityTracker()  # the node's rule, message by message
    dq = np.stack([tracker.update(int(t) * 1e-9, q[i], v) for i, (t, (_, v)) in enumerate(zip(stamps, values))])
    return q, dq


class VelocityTracker:
    """The rule for one message at a time (a node), which :func:`joint_arrays` runs over a stream."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._last: tuple[float, np.ndarray] | None = None

    def update(self, stamp_s: float, positions: np.ndarray, velocities: np.ndarray) -> np.ndarray:
        """(J,) positions and the message's velocities (any length) at ``stamp_s`` -> (J,)
        velocities. A message not newer than the one before gives the differences zero."""
        q = np.asarray(positions, dtype=np.float32)
        v = np.asarray(velocities, dtype=np.float32)
        last, self._last = self._last, (stamp_s, q)
        if _recorded(v, q):
            return v
        if last is None or last[1].shape != q.shape or stamp_s <= last[0]:
            return np.zeros_like(q)
        return (q - last[1]) / np.float32(stamp_s - last[0])


def model_state(position: np.ndarray, velocity: np.ndarray, idx: Sequence[int], stamp_s: float,
                tracker: VelocityTracker | None) -> np.ndarray:
    """One joint-state message -> the state a model reads: the positions of the joints at ``idx``
    (the message's order -> the model's), then, with a ``tracker`` (``action.velocity``), their
    velocities from the same indices (differenced when the message carries none for every name)."""
    q = np.asarray(position, dtype=np.float32)[list(idx)]
    if tracker is None:
        return q
    v = np.asarray(velocity, dtype=np.float32)
    return np.r_[q, tracker.update(stamp_s, q, v[list(idx)] if len(v) == len(position) else v[:0])]
