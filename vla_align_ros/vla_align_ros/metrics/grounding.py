"""Spatial and temporal grounding metrics."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def mask_iou(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target: (B, H, W) bool -> (B,) IoU; two empty masks count as IoU 1."""
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).flatten(1).sum(1).float()
    union = (pred | target).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@torch.no_grad()
def pointing_accuracy(heatmap: Tensor, target: Tensor) -> Tensor:
    """heatmap: (B, H, W) scores, target: (B, H, W) bool -> (B,) 1.0 where the argmax pixel
    falls inside the target mask."""
    b, h, w = heatmap.shape
    idx = heatmap.flatten(1).argmax(1)
    return target.flatten(1)[torch.arange(b), idx].float()


@torch.no_grad()
def temporal_iou(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target: (B, 2) [start, end] segments -> (B,) IoU in time."""
    inter = (torch.minimum(pred[:, 1], target[:, 1]) - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
    union = (torch.maximum(pred[:, 1], target[:, 1]) - torch.minimum(pred[:, 0], target[:, 0])).clamp(min=1e-12)
    return inter / union
