"""Per-sample temperature by difficulty.

A row whose hardest negative sits close to (or above) its positives is a hard row. Its inverse
temperature is raised so its logits are sharper and the hard negatives dominate its gradient;
easy rows get softer logits. The difficulty is measured without gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .contrastive import positive_mask


@torch.no_grad()
def row_difficulty(x: Tensor, y: Tensor, row_ids: Tensor, col_ids: Tensor) -> Tensor:
    """x: (N, D), y: (M, D) unit norm -> (N,) hardest-negative similarity minus the mean
    positive similarity (in [-2, 2]); rows without a negative or a positive get 0."""
    sim = x.float() @ y.float().T  # (N, M)
    pos = positive_mask(row_ids, col_ids)
    hardest = sim.masked_fill(pos, float("-inf")).max(dim=1).values  # (N,)
    mean_pos = (sim * pos).sum(1) / pos.sum(1).clamp(min=1)
    ok = pos.any(1) & (~pos).any(1)
    return torch.where(ok, hardest - mean_pos, torch.zeros_like(mean_pos))


def adaptive_log_scale(base: Tensor, x: Tensor, y: Tensor, row_ids: Tensor, col_ids: Tensor,
                       strength: float) -> Tensor:
    """The log inverse temperature of each row: base + strength * z, z the row's difficulty
    standardised over the batch and clamped to [-2, 2]. base: () -> (N, 1)."""
    d = row_difficulty(x, y, row_ids, col_ids)  # (N,)
    z = ((d - d.mean()) / d.std().clamp(min=1e-6)).clamp(-2.0, 2.0) if d.numel() > 1 else torch.zeros_like(d)
    return base + strength * z.to(base.dtype)[:, None]
