"""Cross-modal retrieval metrics that understand duplicate targets.

A query counts as answered at rank r when the best-ranked gallery item *with the same group
id* sits at position r (1-based). Robot data repeats instructions, so many gallery items can
be correct for one query; ranking one of them first is a hit. Exact score ties are broken at
random, in expectation: one wrong item tied with the only best correct one comes first half the
time. Counting ties as hits would give a collapsed model (every score equal) perfect recall.
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


CORRECTIONS: tuple[str, ...] = ("none", "csls", "inverted_softmax", "centred")


@torch.no_grad()
def corrected_scores(query: Tensor, gallery: Tensor, correction: str = "none", k: int = 10,
                     beta: float = 20.0) -> Tensor:
    """(N, D) queries, (M, D) gallery (unit norm) -> (N, M) retrieval scores, optionally with a
    hubness or modality-gap correction applied at retrieval time:

    * ``csls``: 2 cos(q, g) - r(g), r(g) the mean cosine of gallery item g to its k nearest
      queries (the query's own neighbourhood term is constant per query and drops out of its
      ranking). A hub, close to many queries, is pushed down.
    * ``inverted_softmax``: each gallery item's scores are normalised over the queries,
      beta * cos - logsumexp_q(beta * cos): a hub's probability mass is shared out.
    * ``centred``: each modality's mean over the evaluated set is removed before the cosine,
      which closes the modality gap of the set.
    """
    q, g = query.float(), gallery.float()
    if correction == "centred":
        q = torch.nn.functional.normalize(q - q.mean(0, keepdim=True), dim=-1)
        g = torch.nn.functional.normalize(g - g.mean(0, keepdim=True), dim=-1)
    sim = q @ g.T  # (N, M)
    if correction in ("none", "centred"):
        return sim
    if correction == "csls":
        kk = min(k, sim.shape[0])
        r_g = sim.topk(kk, dim=0).values.mean(0)  # (M,)
        return 2 * sim - r_g[None, :]
    if correction == "inverted_softmax":
        return beta * sim - torch.logsumexp(beta * sim, dim=0, keepdim=True)
    raise ValueError(f"correction={correction!r}: must be one of {CORRECTIONS}")


@dataclass
class TiedRanks:
    """Where each query's first correct gallery item lands when exact score ties are broken at
    random (a collapsed model, whose items all score the same, then gets chance, not every hit)."""

    above: Tensor  # (N,) wrong items scored strictly higher than the best correct one
    tied: Tensor  # (N,) wrong items scored the same as it
    correct: Tensor  # (N,) correct items scored the same as it (>= 1)

    def expected_rank(self) -> Tensor:
        """(N,) float: among ``correct + tied`` items in random order, the expected count of wrong
        ones before the first correct one is ``tied / (correct + 1)``."""
        return 1 + self.above + self.tied / (self.correct + 1)

    def recall(self, k: int) -> Tensor:
        """(N,) float: the probability that the first correct item is within the top ``k``."""
        slots = k - self.above  # places of the top k left to the tied block
        miss = torch.ones(len(self.above), dtype=torch.float64)
        for i in range(k):  # P(the first `slots` of the tied block are all wrong), one place at a time
            p = ((self.tied - i).clamp(min=0) / (self.tied + self.correct - i).clamp(min=1)).double()
            miss = torch.where(slots > i, miss * p, miss)
        return torch.where(slots > 0, 1 - miss, torch.zeros_like(miss)).float()


@torch.no_grad()
def tied_ranks(sim: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> TiedRanks:
    """sim: (N, M) scores, ids (N,), (M,) -> each query's first correct item under random tie
    breaking. Queries with no correct item in the gallery are an error."""
    correct = query_ids[:, None] == gallery_ids[None, :]  # (N, M)
    if not bool(correct.any(dim=1).all()):
        missing = int((~correct.any(dim=1)).sum())
        raise ValueError(f"{missing} queries have no correct item in the gallery")
    best_correct = sim.masked_fill(~correct, float("-inf")).max(dim=1).values[:, None]  # (N, 1)
    return TiedRanks(above=((sim > best_correct) & ~correct).sum(dim=1),
                     tied=((sim == best_correct) & ~correct).sum(dim=1),
                     correct=((sim == best_correct) & correct).sum(dim=1))


def score_ranks(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor,
                correction: str = "none") -> TiedRanks:
    """query: (N, D), gallery: (M, D), ids (N,), (M,) -> each query's first correct item under
    cosine scores (with ``correction``, see :func:`corrected_scores`), ties broken at random."""
    return tied_ranks(corrected_scores(query, gallery, correction), query_ids, gallery_ids)


def first_correct_rank(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor,
                       correction: str = "none") -> Tensor:
    """(N,) expected 1-based rank of each query's first correct item (without ties, 1 + the
    wrong items scored higher); arguments as :func:`score_ranks`."""
    return score_ranks(query, gallery, query_ids, gallery_ids, correction).expected_rank()


def recall_curve(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor, ks: list[int],
                 correction: str = "none") -> list[float]:
    """Recall@k for each k of ``ks`` (ties broken at random, in expectation)."""
    t = score_ranks(query, gallery, query_ids, gallery_ids, correction)
    return [float(t.recall(k).mean()) for k in ks]


def retrieval_scores(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor,
                     correction: str = "none") -> RetrievalScores:
    t = score_ranks(query, gallery, query_ids, gallery_ids, correction)
    ranks = t.expected_rank().float()
    return RetrievalScores(
        r1=float(t.recall(1).mean()),
        r5=float(t.recall(5).mean()),
        r10=float(t.recall(10).mean()),
        mean_rank=float(ranks.mean()),
        median_rank=float(ranks.median()),
        n_queries=int(ranks.numel()),
    )


def pairwise_retrieval(emb: dict[str, Tensor], ids: Tensor, correction: str = "none") -> dict[str, dict[str, float]]:
    """All modality pairs, both directions: {'vision->text': {...}, 'text->vision': {...}, ...}."""
    names = list(emb)
    out: dict[str, dict[str, float]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[f"{a}->{b}"] = retrieval_scores(emb[a], emb[b], ids, ids, correction).as_dict()
            out[f"{b}->{a}"] = retrieval_scores(emb[b], emb[a], ids, ids, correction).as_dict()
    return out


def mean_r1(r1_by_direction: dict[str, float]) -> float:
    """The mean of R@1 over the directions of :func:`pairwise_retrieval` ({'vision->text': r1, ...})."""
    return sum(r1_by_direction.values()) / len(r1_by_direction)


def chance_recall_at_1(query_ids: Tensor, gallery_ids: Tensor) -> float:
    """Expected R@1 of a random ranking: mean over queries of (#correct items / M)."""
    correct = (query_ids[:, None] == gallery_ids[None, :]).float()
    return float(correct.mean(dim=1).mean())


def coarse_bound_r1(ids: Tensor, coarse_ids: Tensor) -> dict[str, float]:
    """The best expected R@1 at the level of ``ids`` (tasks) that a retrieval can reach when one
    side tells items apart only by ``coarse_ids`` (motions: an action chunk carries no colour), on
    a set that is both queries and gallery. Each id must lie within one coarse id. An expectation:
    on a finite set, luck can land above it.

    * ``fine_to_coarse`` (text->action): the query knows its task, the gallery only motions; at
      best the query's motion comes first and ties break at random: #task / #motion.
    * ``coarse_to_fine`` (action->text): the query knows only its motion; at best it names the
      most frequent task of that motion: max_task #task / #motion.
    """
    fine, coarse = ids.long(), coarse_ids.long()
    n_fine = (fine[:, None] == fine[None, :]).sum(1).float()  # (N,) items of the query's task
    n_coarse = (coarse[:, None] == coarse[None, :]).sum(1).float()  # (N,) items of its motion
    if bool((n_fine > n_coarse).any()):
        raise ValueError("an id spans several coarse ids")
    most = torch.zeros_like(n_fine)
    for c in coarse.unique():
        sel = coarse == c
        most[sel] = n_fine[sel].max()
    return {"fine_to_coarse": float((n_fine / n_coarse).mean()), "coarse_to_fine": float((most / n_coarse).mean())}
