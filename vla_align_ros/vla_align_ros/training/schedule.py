"""The learning-rate schedule of the training loop (a pure function: step -> value)."""

from __future__ import annotations

from ..losses.schedules import cosine_schedule


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Linear warmup to ``base_lr`` then cosine decay to ``min_lr``."""
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(f"warmup_steps={warmup_steps}, total_steps={total_steps}: invalid")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return cosine_schedule(step - warmup_steps, max(total_steps - warmup_steps, 1), base_lr, min_lr)
