"""Alignment metrics (pure PyTorch): retrieval, embedding geometry, grounding."""

from .geometry import alignment, hubness, modality_gap, uniformity
from .grounding import mask_iou, pointing_accuracy, temporal_iou
from .retrieval import RetrievalScores, chance_recall_at_1, pairwise_retrieval, retrieval_scores

__all__ = [
    "alignment", "hubness", "modality_gap", "uniformity",
    "mask_iou", "pointing_accuracy", "temporal_iou",
    "RetrievalScores", "chance_recall_at_1", "pairwise_retrieval", "retrieval_scores",
]
