"""Pure schedule functions (step -> value) for the contrastive temperature (the learning-rate
schedule is the trainer's: ``training.schedule``)."""

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

