"""Retrieval metrics with duplicate targets, embedding geometry and grounding metrics, each
checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vla_align_ros.metrics import (alignment, chance_recall_at_1, hubness, mask_iou, modality_gap,
                                   pointing_accuracy, retrieval_scores, temporal_iou, uniformity)
from vla_align_ros.metrics.retrieval import coarse_bound_r1, first_correct_rank, recall_curve, tied_ranks


def test_first_correct_rank_counts_any_duplicate_as_a_hit():
    # gallery on the unit circle; query 0 is closest to gallery 2, which shares its id.
    ang = torch.tensor([0.0, 1.0, 2.0, 3.0])
    gallery = torch.stack([ang.cos(), ang.sin()], 1)
    query = torch.stack([torch.tensor([2.1, 0.1]).cos(), torch.tensor([2.1, 0.1]).sin()], 1)
    g_ids = torch.tensor([5, 6, 5, 7])
    q_ids = torch.tensor([5, 7])
    ranks = first_correct_rank(query, gallery, q_ids, g_ids)
    # query 0 (angle 2.1): nearest is item 2 (id 5) -> rank 1.
    # query 1 (angle 0.1): order 0, 1, 2, 3 by distance; id 7 is item 3 -> rank 4.
    assert ranks.tolist() == [1, 4]
    s = retrieval_scores(query, gallery, q_ids, g_ids)
    assert (s.r1, s.r5, s.mean_rank, s.median_rank) == (0.5, 1.0, 2.5, 1.0)


def test_retrieval_rejects_queries_without_targets():
    with pytest.raises(ValueError, match="1 queries have no correct item"):
        first_correct_rank(torch.eye(2), torch.eye(2), torch.tensor([0, 9]), torch.tensor([0, 1]))


def test_exact_ties_are_broken_at_random_in_expectation():
    # A collapsed model (every score the same) gets chance, not a hit for every query.
    ids = torch.tensor([0, 0, 1, 2])
    same = F.normalize(torch.ones(4, 3), dim=1)
    s = retrieval_scores(same, same, ids, ids)
    assert s.r1 == pytest.approx(chance_recall_at_1(ids, ids)) and s.r1 == pytest.approx(0.375)
    # By hand: query 0 ties 2 correct with 2 wrong items, so 2/3 of a wrong one comes first on
    # average; query 2 has 1 correct among 4, so 3/2.
    assert first_correct_rank(same, same, ids, ids).tolist() == pytest.approx([5 / 3, 5 / 3, 2.5, 2.5])
    # Query 2 within the top 2: its first two places are both wrong with probability 3/4 * 2/3.
    assert recall_curve(same, same, ids, ids, [1, 2, 4]) == pytest.approx([0.375, (2 * 5 / 6 + 2 * 0.5) / 4, 1.0])
    # Ties only above the best correct item still count in full: one wrong item strictly higher
    # and one tied -> rank 2.5, never in the top 1, in the top 2 half the time.
    sim = torch.tensor([[0.9, 0.5, 0.5, 0.1]])
    t = tied_ranks(sim, torch.tensor([1]), torch.tensor([0, 1, 2, 3]))
    assert (int(t.above), int(t.tied), int(t.correct)) == (1, 1, 1)
    assert float(t.expected_rank()) == 2.5 and [float(t.recall(k)) for k in (1, 2, 3)] == [0.0, 0.5, 1.0]


def test_chance_recall():
    ids = torch.tensor([0, 0, 1, 2])
    # two queries see 2/4 correct, two see 1/4 -> mean 0.375
    assert chance_recall_at_1(ids, ids) == pytest.approx(0.375)


def test_the_best_task_level_recall_when_one_side_only_shows_the_motion():
    # tasks 0, 1 share motion 0 (3 and 1 frames); task 2 is motion 1 alone (2 frames)
    tasks = torch.tensor([0, 0, 0, 1, 2, 2])
    motions = torch.tensor([0, 0, 0, 0, 1, 1])
    b = coarse_bound_r1(tasks, motions)
    assert b["fine_to_coarse"] == pytest.approx((3 * 3 / 4 + 1 / 4 + 2 * 1.0) / 6)
    assert b["coarse_to_fine"] == pytest.approx((4 * 3 / 4 + 2 * 1.0) / 6)
    # Random rankings within each motion reach the first bound on average.
    g = torch.Generator().manual_seed(0)
    hits = []
    for _ in range(2000):
        noise = torch.rand(6, 6, generator=g)
        scores = (motions[:, None] == motions[None, :]).float() + 0.5 * noise  # same motion first, random order
        hits.append(float((tasks[scores.argmax(1)] == tasks).float().mean()))
    assert sum(hits) / len(hits) == pytest.approx(b["fine_to_coarse"], abs=0.01)
    # Scores that tell only motions apart (exact ties within a motion) reach it exactly.
    by_motion = (motions[:, None] == motions[None, :]).float()
    assert float(tied_ranks(by_motion, tasks, tasks).recall(1).mean()) == pytest.approx(b["fine_to_coarse"])
    with pytest.raises(ValueError, match="spans several"):
        coarse_bound_r1(torch.tensor([0, 0]), torch.tensor([0, 1]))


def test_episode_embeddings_average_each_episodes_frames():
    from vla_align_ros.training.report import episode_embeddings

    frames = {"vision": torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])}
    emb, ids = episode_embeddings(frames, torch.tensor([7, 7, 2]), torch.tensor([5, 5, 9]))
    # episodes in sorted order: 2 (one frame), 7 (the mean of two, normalised)
    torch.testing.assert_close(emb["vision"], torch.tensor([[0.6, 0.8], [0.5**0.5, 0.5**0.5]]))
    assert ids.tolist() == [9, 5]


def test_modality_gap_alignment_uniformity():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[-1.0, 0.0], [0.0, -1.0]])
    assert modality_gap(a, b) == pytest.approx(math.sqrt(2.0))
    assert alignment(a, b) == pytest.approx(4.0)  # ||a_i - b_i|| = 2 for both pairs
    pts = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    d2 = [4.0, 2.0, 2.0]
    expected = math.log(sum(math.exp(-2 * v) for v in d2) / 3)
    assert uniformity(pts) == pytest.approx(expected, rel=1e-6)


def test_hubness_detects_a_hub():
    g = torch.Generator().manual_seed(0)
    gallery = F.normalize(torch.randn(50, 16, generator=g), dim=1)
    queries = F.normalize(torch.randn(200, 16, generator=g), dim=1)
    balanced = hubness(queries, gallery, k=5)
    c = gallery[0]
    near_c = F.normalize(torch.randn(200, 16, generator=g) * 0.3 + c, dim=1)  # all close to item 0
    hubbed = hubness(near_c, gallery, k=5)
    assert balanced["skewness"] < 1.5
    assert hubbed["skewness"] > 2.5
    assert hubbed["max_occurrence_over_k"] > 0.9 * 200 / 5  # item 0 in (nearly) every top-5


def test_grounding_metrics():
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    tgt = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, :2, :2] = True
    tgt[0, :2, :] = True  # IoU 4/8
    assert mask_iou(pred, tgt).tolist() == [0.5, 1.0]  # second: both empty
    heat = torch.zeros(2, 4, 4)
    heat[0, 1, 3] = 1.0
    heat[1, 3, 3] = 1.0
    assert pointing_accuracy(heat, tgt).tolist() == [1.0, 0.0]
    seg = temporal_iou(torch.tensor([[0.0, 2.0], [5.0, 6.0]]), torch.tensor([[1.0, 3.0], [0.0, 1.0]]))
    assert seg.tolist() == pytest.approx([1 / 3, 0.0])
