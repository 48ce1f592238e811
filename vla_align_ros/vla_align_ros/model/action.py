"""Action encoder: an action chunk (H steps x A dims) plus the robot state -> one vector."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ActionConfig


class ActionEncoder(nn.Module):
    def __init__(self, cfg: ActionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, a, s, d = cfg.horizon, cfg.action_dim, cfg.state_width, cfg.hidden_size
        self.out_dim = d
        if cfg.kind == "mlp":
            layers: list[nn.Module] = [nn.Linear(h * a + s, d), nn.GELU()]
            for _ in range(cfg.num_layers - 1):
                layers += [nn.Linear(d, d), nn.GELU()]
            self.mlp = nn.Sequential(*layers, nn.LayerNorm(d))
        else:
            self.step_in = nn.Linear(a, d)
            self.state_in = nn.Linear(max(s, 1), d)
            self.pos = nn.Parameter(torch.zeros(1, h + 1, d))
            layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)

    def forward(self, actions: Tensor, state: Tensor | None = None) -> Tensor:
        """actions: (B, H, A), state: (B, S) -> (B, hidden)."""
        b, h, a = actions.shape
        if (h, a) != (self.cfg.horizon, self.cfg.action_dim):
            raise ValueError(f"actions shape {tuple(actions.shape)} does not match horizon={self.cfg.horizon}, "
                             f"action_dim={self.cfg.action_dim}")
        if state is None:
            state = actions.new_zeros(b, self.cfg.state_width)
        if self.cfg.kind == "mlp":
            return self.mlp(torch.cat([actions.flatten(1), state], dim=1))
        st = state if self.cfg.state_dim > 0 else actions.new_zeros(b, 1)
        tokens = torch.cat([self.state_in(st)[:, None], self.step_in(actions)], dim=1) + self.pos  # (B, H+1, d)
        return self.norm(self.encoder(tokens).mean(1))
