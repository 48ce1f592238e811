"""Cross-modal retrieval metrics that understand duplicate targets.

A query counts as answered at rank r when the best-ranked gallery item *with the same group
id* sits at position r (1-based). Robot data repeats instructions, so many gallery items can
be correct for one query; ranking one of them first is a hit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass
class RetrievalScores:
    r1: float
    r5: float
    r10: float
    mean_rank: float
    median_rank: float
    n_queries: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def first_correct_rank(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """query: (N, D), gallery: (M, D), ids (N,), (M,) -> (N,) 1-based rank of the first correct
    item. Queries with no correct item in the gallery are an error."""
    sim = query.float() @ gallery.float().T  # (N, M)
    correct = query_ids[:, None] == gallery_ids[None, :]  # (N, M)
    if not bool(correct.any(dim=1).all()):
        missing = int((~correct.any(dim=1)).sum())
        raise ValueError(f"{missing} queries have no correct item in the gallery")
    best_correct = sim.masked_fill(~correct, float("-inf")).max(dim=1).values  # (N,)
    # Rank = 1 + number of wrong items scored strictly higher than the best correct one.
    return 1 + ((sim > best_correct[:, None]) & ~correct).sum(dim=1)


def retrieval_scores(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> RetrievalScores:
    ranks = first_correct_rank(query, gallery, query_ids, gallery_ids).float()
    return RetrievalScores(
        r1=float((ranks <= 1).float().mean()),
        r5=float((ranks <= 5).float().mean()),
        r10=float((ranks <= 10).float().mean()),
        mean_rank=float(ranks.mean()),
        median_rank=float(ranks.median()),
        n_queries=int(ranks.numel()),
    )


def pairwise_retrieval(emb: dict[str, Tensor], ids: Tensor) -> dict[str, dict[str, float]]:
    """All modality pairs, both directions: {'vision->text': {...}, 'text->vision': {...}, ...}."""
    names = list(emb)
    out: dict[str, dict[str, float]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[f"{a}->{b}"] = retrieval_scores(emb[a], emb[b], ids, ids).as_dict()
            out[f"{b}->{a}"] = retrieval_scores(emb[b], emb[a], ids, ids).as_dict()
    return out


def chance_recall_at_1(query_ids: Tensor, gallery_ids: Tensor) -> float:
    """Expected R@1 of a random ranking: mean over queries of (#correct items / M)."""
    correct = (query_ids[:, None] == gallery_ids[None, :]).float()
    return float(correct.mean(dim=1).mean())
