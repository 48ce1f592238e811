"""Pure schedule functions (step -> value), for temperature and learning rate."""

from __future__ import annotations

import math


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine interpolation from ``start`` at step 0 to ``end`` at ``total_steps`` (clamped)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps}: must be > 0")
    p = min(max(step / total_steps, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * p))


def linear_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps}: must be > 0")
    p = min(max(step / total_steps, 0.0), 1.0)
    return start + (end - start) * p


def temperature_schedule(kind: str, step: int, total_steps: int, t_start: float, t_end: float) -> float:
    """Temperature at ``step``: high early (smooth targets), low late (sharp), as the literature
    on contrastive training advises. kind: constant | linear | cosine."""
    if kind == "constant":
        return t_start
    if kind == "linear":
        return linear_schedule(step, total_steps, t_start, t_end)
    if kind == "cosine":
        return cosine_schedule(step, total_steps, t_start, t_end)
    raise ValueError(f"kind={kind!r}: must be one of ('constant', 'linear', 'cosine')")


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Linear warmup to ``base_lr`` then cosine decay to ``min_lr``."""
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(f"warmup_steps={warmup_steps}, total_steps={total_steps}: invalid")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return cosine_schedule(step - warmup_steps, max(total_steps - warmup_steps, 1), base_lr, min_lr)
