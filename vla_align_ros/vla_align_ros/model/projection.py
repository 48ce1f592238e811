"""Projection heads into the shared embedding space."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ProjectionConfig


class Projection(nn.Module):
    """Linear or two-layer MLP projection; ``forward`` returns L2-normalised embeddings."""

    def __init__(self, in_dim: int, cfg: ProjectionConfig) -> None:
        super().__init__()
        if cfg.kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, cfg.embed_dim)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, cfg.hidden_size), nn.GELU(), nn.Dropout(cfg.dropout),
                                     nn.Linear(cfg.hidden_size, cfg.embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) -> (B, embed_dim), unit norm."""
        return F.normalize(self.net(x), dim=-1)
