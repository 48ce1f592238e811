"""Contrastive losses (pure PyTorch)."""

from .contrastive import info_nce, info_nce_directional, positive_mask, siglip_loss, siglip_loss_chunked
from .negatives import MemoryBank, hard_negative_indices, info_nce_hard_directional
from .schedules import cosine_schedule, linear_schedule, temperature_schedule
from .trimodal import PAIR_MODALITIES, PAIRS, TrimodalLoss, TrimodalLossOutput

__all__ = [
    "info_nce", "info_nce_directional", "positive_mask", "siglip_loss", "siglip_loss_chunked",
    "MemoryBank", "hard_negative_indices", "info_nce_hard_directional",
    "cosine_schedule", "linear_schedule", "temperature_schedule",
    "PAIR_MODALITIES", "PAIRS", "TrimodalLoss", "TrimodalLossOutput",
]
