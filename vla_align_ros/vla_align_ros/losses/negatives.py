"""Negatives beyond the batch diagonal: hard-negative mining and a FIFO memory bank."""

from __future__ import annotations

import torch
from torch import Tensor

from .contrastive import multi_positive_ce, positive_mask


def hard_negative_indices(sim: Tensor, pos: Tensor, k: int) -> Tensor:
    """Top-k most similar wrong candidates per row.

    sim: (N, M) similarities, pos: (N, M) bool positives -> (N, k) column indices, most similar
    first. Positives are never selected; k must not exceed the fewest negatives in any row.
    """
    n_neg = (~pos).sum(dim=1)
    if k <= 0 or k > int(n_neg.min()):
        raise ValueError(f"k={k}: must be in [1, {int(n_neg.min())}] (fewest negatives in a row)")
    masked = sim.masked_fill(pos, float("-inf"))
    return masked.topk(k, dim=1).indices


def info_nce_hard_directional(
    x: Tensor, y: Tensor, logit_scale: Tensor, row_ids: Tensor, col_ids: Tensor, k: int
) -> Tensor:
    """x->y InfoNCE where each row competes only against its positives and its k hardest
    negatives (mined without gradient, scored with it). x: (N, D), y: (M, D)."""
    logits = logit_scale.exp() * x @ y.T  # (N, M)
    pos = positive_mask(row_ids, col_ids)
    kk = min(k, int((~pos).sum(dim=1).min()))
    hard = torch.zeros_like(pos)
    if kk > 0:
        hard.scatter_(1, hard_negative_indices(logits.detach(), pos, kk), True)
    return multi_positive_ce(logits, pos, hard)


class MemoryBank(torch.nn.Module):
    """FIFO queue of past (detached) embeddings with their group ids, used as extra negatives.

    ``get()`` returns the stored entries oldest first. When full, each enqueue overwrites the
    oldest entries.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"MemoryBank(size={size}, dim={dim}): both must be > 0")
        self.size = size
        self.register_buffer("feats", torch.zeros(size, dim))  # (K, D)
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next write slot
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # filled slots

    @torch.no_grad()
    def enqueue(self, feats: Tensor, ids: Tensor) -> None:
        """feats: (B, D), ids: (B,). Only the last ``size`` rows are kept if B > size."""
        feats, ids = feats.detach()[-self.size :], ids.detach()[-self.size :]
        b = feats.shape[0]
        slots = (self.ptr + torch.arange(b, device=self.feats.device)) % self.size
        self.feats[slots] = feats.to(self.feats.dtype)
        self.ids[slots] = ids.to(self.ids.dtype)
        self.ptr.copy_((self.ptr + b) % self.size)
        self.count.copy_(torch.clamp(self.count + b, max=self.size))

    def get(self) -> tuple[Tensor, Tensor]:
        """-> feats (K', D), ids (K',), oldest first, K' = number of filled slots. Copies: the
        loss that reads them is differentiated after this step's ``enqueue`` wrote the buffer."""
        c = int(self.count)
        if c < self.size:
            return self.feats[:c].clone(), self.ids[:c].clone()
        order = (self.ptr + torch.arange(self.size, device=self.feats.device)) % self.size
        return self.feats[order], self.ids[order]
