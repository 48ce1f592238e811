"""Geometry of the shared embedding space: modality gap, alignment/uniformity, hubness."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def modality_gap(a: Tensor, b: Tensor) -> float:
    """Euclidean distance between the centroids of two sets of normalised embeddings."""
    return float((a.float().mean(0) - b.float().mean(0)).norm())


@torch.no_grad()
def alignment(a: Tensor, b: Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola alignment: E ||a_i - b_i||^alpha over positive pairs (lower is better)."""
    return float((a.float() - b.float()).norm(dim=1).pow(alpha).mean())


@torch.no_grad()
def uniformity(x: Tensor, t: float = 2.0) -> float:
    """Wang & Isola uniformity: log E_{i<j} exp(-t ||x_i - x_j||^2) (lower is more uniform)."""
    x = x.float()
    sq = torch.pdist(x, p=2).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(sq.numel()))))


@torch.no_grad()
def hubness(query: Tensor, gallery: Tensor, k: int = 10, correction: str = "none") -> dict[str, float]:
    """k-occurrence statistics: N_k(j) = how often gallery item j is among a query's k nearest.
    Returns the skewness of N_k (large positive skew = a few hubs answer most queries), the
    largest N_k relative to k, and the fraction of gallery items never retrieved (anti-hubs).
    ``correction``: the retrieval-time scores to rank by (``retrieval.corrected_scores``)."""
    from .retrieval import corrected_scores

    k = min(k, gallery.shape[0])
    sim = corrected_scores(query, gallery, correction)  # (N, M)
    top = sim.topk(k, dim=1).indices  # (N, k)
    counts = torch.bincount(top.flatten(), minlength=gallery.shape[0]).float()  # (M,)
    mu, sd = counts.mean(), counts.std(unbiased=False)
    skew = float(((counts - mu) ** 3).mean() / sd.clamp(min=1e-12) ** 3) if sd > 0 else 0.0
    return {
        "k": float(k),
        "skewness": skew,
        "max_occurrence_over_k": float(counts.max() / k),
        "antihub_fraction": float((counts == 0).float().mean()),
    }
