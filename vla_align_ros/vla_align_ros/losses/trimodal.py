"""The trimodal objective L = alpha*L_VL + beta*L_VA + gamma*L_LA.

Each pair has its own loss type (InfoNCE, SigLIP, chunked SigLIP), its own learnable
temperature (a log-parameter, clamped) and, for SigLIP, its own learnable bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import LossConfig
from .contrastive import info_nce_directional, siglip_loss, siglip_loss_chunked
from .distributed import gather_no_grad, gather_with_grad, is_distributed, local_slice
from .negatives import MemoryBank, info_nce_hard_directional
from .schedules import temperature_schedule
from .temperature import adaptive_log_scale

PAIRS: tuple[str, ...] = ("vl", "va", "la")
PAIR_MODALITIES: dict[str, tuple[str, str]] = {"vl": ("vision", "text"), "va": ("vision", "action"), "la": ("text", "action")}


@dataclass
class TrimodalLossOutput:
    total: Tensor
    per_pair: dict[str, Tensor]


class PairTemperature(nn.Module):
    """Learnable log inverse-temperature (and SigLIP bias) for one modality pair."""

    def __init__(self, cfg: LossConfig, loss_type: str) -> None:
        super().__init__()
        siglip = loss_type.startswith("siglip")
        init = math.log(cfg.siglip_init_logit_scale) if siglip else math.log(1.0 / cfg.init_temperature)
        # A scheduled temperature (InfoNCE pairs only) replaces the learnable one.
        self.scheduled = cfg.temperature_schedule != "none" and not siglip
        self.logit_scale = nn.Parameter(torch.tensor(float(init)),
                                        requires_grad=cfg.learnable_temperature and not self.scheduled)
        self.bias = nn.Parameter(torch.tensor(float(cfg.siglip_init_bias)), requires_grad=siglip)
        self.max_log = math.log(cfg.max_logit_scale)
        self._scheduled_log: float | None = None

    def set_temperature(self, t: float) -> None:
        """The scheduled temperature for the coming steps (scheduled pairs only)."""
        if self.scheduled:
            self._scheduled_log = math.log(1.0 / t)

    def scale(self) -> Tensor:
        """Clamped log scale: the temperature never drops below 1/max_logit_scale."""
        if self._scheduled_log is not None:
            return self.logit_scale.new_tensor(min(self._scheduled_log, self.max_log))
        return self.logit_scale.clamp(max=self.max_log)


class TrimodalLoss(nn.Module):
    def __init__(self, cfg: LossConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.temps = nn.ModuleDict({p: PairTemperature(cfg, getattr(cfg, p)) for p in PAIRS})
        self.banks = nn.ModuleDict()
        if cfg.memory_bank > 0:
            for name in ("vision", "text", "action"):
                self.banks[name] = MemoryBank(cfg.memory_bank, embed_dim)

    def weights(self) -> dict[str, float]:
        return {"vl": self.cfg.alpha, "va": self.cfg.beta, "la": self.cfg.gamma}

    def set_progress(self, step: int, total_steps: int) -> None:
        """Advance the temperature schedule (a no-op without one)."""
        if self.cfg.temperature_schedule == "none":
            return
        t = temperature_schedule(self.cfg.temperature_schedule, step, total_steps, self.cfg.temperature_start,
                                 self.cfg.temperature_end)
        for temp in self.temps.values():
            temp.set_temperature(t)

    def pair_loss(self, pair: str, x: Tensor, y: Tensor, ids: Tensor | None,
                  row_negatives: Tensor | None = None) -> Tensor:
        """x, y: (B, D) local embeddings of the two modalities; ids: (B,) group ids
        (equal ids are positives when ``shared_positives``); None: only the item's own partner.
        row_negatives: (B, R, D) extra y-side negatives that only row i of x competes against."""
        cfg, temp = self.cfg, self.temps[pair]
        loss_type = getattr(cfg, pair)
        n_local = x.shape[0]
        # Global batch under DDP: columns from every rank (with gradient).
        xg, yg = gather_with_grad(x), gather_with_grad(y)  # (W*B, D)
        if cfg.centre:  # shared-space centring: each modality's batch mean removed
            xg = F.normalize(xg - xg.mean(0, keepdim=True), dim=-1)
            yg = F.normalize(yg - yg.mean(0, keepdim=True), dim=-1)
        if cfg.shared_positives and ids is not None:
            ids_g = gather_no_grad(ids)
        else:
            ids_g = torch.arange(xg.shape[0], device=x.device)
        rows = local_slice(n_local) if (cfg.local_loss and is_distributed()) else slice(None)
        xr, ids_r = xg[rows], ids_g[rows]
        if loss_type == "infonce":
            yr = yg[rows]
            if cfg.hard_negatives > 0:
                k = cfg.hard_negatives
                return 0.5 * (info_nce_hard_directional(xr, yg, temp.scale(), ids_r, ids_g, k)
                              + info_nce_hard_directional(yr, xg, temp.scale(), ids_r, ids_g, k))
            scale_x = scale_y = temp.scale()
            if cfg.adaptive_temperature > 0:
                scale_x = adaptive_log_scale(scale_x, xr, yg, ids_r, ids_g, cfg.adaptive_temperature)  # (N, 1)
                scale_y = adaptive_log_scale(scale_y, yr, xg, ids_r, ids_g, cfg.adaptive_temperature)
            if row_negatives is not None:
                row_negatives = gather_with_grad(row_negatives)[rows]  # (N, R, D)
            extra_y = extra_ids = None
            if cfg.memory_bank > 0:
                extra_y, extra_ids = self.banks[PAIR_MODALITIES[pair][1]].get()
                if not cfg.shared_positives or ids is None:
                    extra_ids = torch.full_like(extra_ids, -1)
            # Local rows against global columns in both directions; the mean over ranks
            # equals the loss on the concatenated batch.
            return 0.5 * (info_nce_directional(xr, yg, scale_x, ids_r, ids_g, extra_y, extra_ids, row_negatives)
                          + info_nce_directional(yr, xg, scale_y, ids_r, ids_g))
        if loss_type == "siglip":
            return siglip_loss(xr, yg, temp.scale(), temp.bias, ids_r, ids_g)
        return siglip_loss_chunked(xr, yg, temp.scale(), temp.bias, ids_r, ids_g, cfg.siglip_chunk)

    def pair_ids(self, pair: str, ids: Tensor, motion_ids: Tensor | None) -> Tensor | None:
        mode = getattr(self.cfg, f"{pair}_positives")
        if mode == "instance":
            return None
        if mode == "motion":
            if motion_ids is None:
                raise ValueError(f"loss.{pair}_positives=motion needs motion ids; this data has none")
            return motion_ids
        return ids

    def forward(self, emb: dict[str, Tensor], ids: Tensor, motion_ids: Tensor | None = None,
                text_negatives: Tensor | None = None) -> TrimodalLossOutput:
        """emb: {'vision','text','action'} -> (B, D) normalised embeddings; ids: (B,) task ids;
        motion_ids: (B,) motion ids (for pairs whose positives are "motion"); text_negatives:
        (B, R, D) texts that differ from each item's instruction in one attribute, extra
        negatives of its image."""
        per_pair: dict[str, Tensor] = {}
        total = emb["vision"].new_zeros(())
        for pair, w in self.weights().items():
            if w == 0:
                continue
            a, b = PAIR_MODALITIES[pair]
            negs = text_negatives if pair == "vl" else None
            per_pair[pair] = self.pair_loss(pair, emb[a], emb[b], self.pair_ids(pair, ids, motion_ids), negs)
            total = total + w * per_pair[pair]
            if self.cfg.gap_penalty > 0:  # squared distance between the two modality means
                gap = (gather_with_grad(emb[a]).mean(0) - gather_with_grad(emb[b]).mean(0)).pow(2).sum()
                per_pair[f"{pair}_gap"] = gap
                total = total + self.cfg.gap_penalty * w * gap
        if self.cfg.memory_bank > 0 and self.training:
            for name, bank in self.banks.items():
                bank.enqueue(gather_no_grad(emb[name]), gather_no_grad(ids))
        return TrimodalLossOutput(total=total, per_pair=per_pair)
