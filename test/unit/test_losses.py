"""Each loss against its formula computed independently in float64 NumPy, gradients by
gradcheck, chunked SigLIP against dense, hard-negative selection and the memory bank."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla_align_ros.config import LossConfig
from vla_align_ros.losses import (MemoryBank, TrimodalLoss, cosine_schedule, hard_negative_indices, info_nce,
                                  info_nce_directional, siglip_loss, siglip_loss_chunked, temperature_schedule)


def unit(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def np_info_nce(x, y, t, ids):
    """Symmetric InfoNCE with multiple positives, written out with loops in float64: each
    positive competes against the row's negatives only."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)

    def direction(a, b):
        total = 0.0
        for i in range(n):
            logits = [t * float(a[i] @ b[j]) for j in range(n)]
            pos = [j for j in range(n) if ids[i] == ids[j]]
            neg = [j for j in range(n) if ids[i] != ids[j]]
            row = 0.0
            for p in pos:
                denom = math.exp(logits[p]) + sum(math.exp(logits[q]) for q in neg)
                row += -(logits[p] - math.log(denom))
            total += row / len(pos)
        return total / n

    return 0.5 * (direction(x, y) + direction(y, x))


def np_siglip(x, y, t, b, ids):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    total = 0.0
    for i in range(len(x)):
        for j in range(len(y)):
            z = 1.0 if ids[i] == ids[j] else -1.0
            logit = t * float(x[i] @ y[j]) + b
            total += math.log1p(math.exp(-z * logit))  # -log sigmoid(z * logit)
    return total / len(x)


@pytest.mark.parametrize("ids", [[0, 1, 2, 3, 4, 5], [0, 1, 1, 2, 0, 3]])
def test_info_nce_matches_formula(ids):
    x, y = unit(6, 5, 0), unit(6, 5, 1)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    idt = torch.tensor(ids)
    got = float(info_nce(x, y, scale, idt, idt))
    assert got == pytest.approx(np_info_nce(x.numpy(), y.numpy(), 1 / 0.07, ids), rel=1e-10)


def test_info_nce_with_diagonal_equals_cross_entropy():
    x, y = unit(8, 4, 2), unit(8, 4, 3)
    scale = torch.tensor(2.0, dtype=torch.float64)
    logits = scale.exp() * x @ y.T
    ref = 0.5 * (F.cross_entropy(logits, torch.arange(8)) + F.cross_entropy(logits.T, torch.arange(8)))
    assert float(info_nce(x, y, scale)) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("ids", [[0, 1, 2, 3, 4], [7, 7, 1, 2, 1]])
def test_siglip_matches_formula(ids):
    x, y = unit(5, 4, 4), unit(5, 4, 5)
    ls, b = torch.tensor(math.log(10.0), dtype=torch.float64), torch.tensor(-10.0, dtype=torch.float64)
    idt = torch.tensor(ids)
    ref = np_siglip(x.numpy(), y.numpy(), 10.0, -10.0, ids)
    assert float(siglip_loss(x, y, ls, b, idt, idt)) == pytest.approx(ref, rel=1e-10)
    assert float(siglip_loss_chunked(x, y, ls, b, idt, idt, chunk=2)) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_chunked_siglip_equals_dense_value_and_gradients(chunk):
    n, m, d = 13, 11, 6
    ids_r = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1])
    ids_c = torch.arange(11)
    grads = []
    values = []
    for fn in ("dense", "chunked"):
        x = unit(n, d, 6).requires_grad_()
        y = unit(m, d, 7).requires_grad_()
        ls = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
        if fn == "dense":
            loss = siglip_loss(x, y, ls, b, ids_r, ids_c)
        else:
            loss = siglip_loss_chunked(x, y, ls, b, ids_r, ids_c, chunk=chunk)
        loss.backward()
        values.append(float(loss.detach()))
        grads.append([t.grad.clone() for t in (x, y, ls, b)])
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    for gd, gc in zip(*grads):
        torch.testing.assert_close(gd, gc, rtol=1e-10, atol=1e-12)


def test_gradcheck_chunked_siglip_and_info_nce():
    x = unit(5, 3, 8).requires_grad_()
    y = unit(4, 3, 9).requires_grad_()
    ls = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    ids_r, ids_c = torch.tensor([0, 1, 2, 3, 1]), torch.arange(4)
    assert torch.autograd.gradcheck(lambda *a: siglip_loss_chunked(*a, ids_r, ids_c, chunk=2), (x, y, ls, b))
    xs = unit(4, 3, 10).requires_grad_()
    ids = torch.tensor([0, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda a, c, s: info_nce(a, c, s, ids, ids), (xs, y, ls))


def test_false_negatives_become_positives():
    """Two samples of the same instruction in look-alike scenes: with diagonal ids each is the
    other's negative and the loss cannot drop below log 2 on those rows; with shared ids they
    are positives and a perfectly aligned batch has a near-zero loss."""
    x = unit(4, 8, 11)
    x[1] = x[0]
    y = x.clone()
    scale = torch.tensor(math.log(100.0), dtype=torch.float64)
    shared = torch.tensor([0, 0, 1, 2])
    assert float(info_nce(x, y, scale, shared, shared)) < 0.05
    assert float(info_nce(x, y, scale)) > 0.5 * math.log(2.0)


def test_hard_negative_selection_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(6, 9, generator=g)
    ids_r = torch.tensor([0, 1, 2, 3, 4, 5])
    ids_c = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2])
    pos = ids_r[:, None] == ids_c[None, :]
    got = hard_negative_indices(sim, pos, k=3)
    for i in range(6):
        negs = sorted((j for j in range(9) if not pos[i, j]), key=lambda j: -float(sim[i, j]))[:3]
        assert got[i].tolist() == negs
        assert not pos[i, got[i]].any()
    with pytest.raises(ValueError, match="k=9"):
        hard_negative_indices(sim, pos, k=9)


def test_hard_negative_loss_ignores_easy_negatives():
    x, y = unit(6, 4, 12), unit(6, 4, 13)
    ids = torch.arange(6)
    scale = torch.tensor(1.0, dtype=torch.float64)
    full = float(info_nce_directional(x, y, scale, ids, ids))
    hard1 = LossConfig(hard_negatives=1)
    from vla_align_ros.losses import info_nce_hard_directional

    h1 = float(info_nce_hard_directional(x, y, scale, ids, ids, k=1))
    h5 = float(info_nce_hard_directional(x, y, scale, ids, ids, k=5))
    assert h1 < h5 and h5 == pytest.approx(full, rel=1e-12)
    assert hard1.hard_negatives == 1


def test_memory_bank_is_fifo():
    bank = MemoryBank(size=5, dim=2)
    for start in (0, 3, 6):  # enqueue rows valued 0..8 in three batches of 3
        vals = torch.arange(start, start + 3, dtype=torch.float32)
        bank.enqueue(torch.stack([vals, vals], 1), vals.long())
    feats, ids = bank.get()
    assert ids.tolist() == [4, 5, 6, 7, 8]  # the five newest, oldest first
    assert feats[:, 0].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]
    small = MemoryBank(size=4, dim=1)
    small.enqueue(torch.ones(2, 1), torch.tensor([1, 2]))
    assert small.get()[1].tolist() == [1, 2]


def test_memory_bank_negatives_enter_the_loss():
    cfg = LossConfig(memory_bank=16)
    loss = TrimodalLoss(cfg, embed_dim=8).train()
    emb = {k: unit(4, 8, s, torch.float32) for s, k in enumerate(("vision", "text", "action"))}
    first = float(loss(emb, torch.arange(4)).per_pair["vl"])
    assert loss.banks["text"].get()[0].shape == (4, 8)
    second = float(loss(emb, torch.arange(4)).per_pair["vl"])
    assert second != pytest.approx(first)  # 4 stored entries now compete as candidates
    # a training step: the loss reads the bank, enqueues, and is differentiated afterwards
    x = {k: v.clone().requires_grad_() for k, v in emb.items()}
    loss(x, torch.arange(4)).total.backward()
    assert x["vision"].grad is not None and torch.isfinite(x["vision"].grad).all()


def test_trimodal_weights_and_learnable_temperature_clamp():
    cfg = LossConfig(alpha=2.0, beta=0.0, gamma=0.5, max_logit_scale=50.0)
    loss = TrimodalLoss(cfg, embed_dim=8)
    emb = {k: unit(6, 8, s, torch.float32) for s, k in enumerate(("vision", "text", "action"))}
    out = loss(emb, torch.arange(6))
    assert set(out.per_pair) == {"vl", "la"}
    assert float(out.total) == pytest.approx(2.0 * float(out.per_pair["vl"]) + 0.5 * float(out.per_pair["la"]), rel=1e-6)
    with torch.no_grad():
        loss.temps["vl"].logit_scale.fill_(10.0)
    assert float(loss.temps["vl"].scale().exp()) == pytest.approx(50.0, rel=1e-5)
    assert loss.temps["vl"].logit_scale.requires_grad


def test_positives_per_pair_task_motion_instance():
    """Two items of one motion but different tasks: positives for a "motion" pair, negatives for
    a "task" pair, and with "instance" only the own partner counts."""
    emb = {k: unit(4, 8, s, torch.float32) for s, k in enumerate(("vision", "text", "action"))}
    ids, motion = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1])
    base = TrimodalLoss(LossConfig(), embed_dim=8)
    by_motion = TrimodalLoss(LossConfig(la_positives="motion"), embed_dim=8)
    by_instance = TrimodalLoss(LossConfig(vl_positives="instance"), embed_dim=8)
    ref = base(emb, ids, motion).per_pair
    assert float(by_motion(emb, ids, motion).per_pair["la"]) != pytest.approx(float(ref["la"]))
    assert float(by_motion(emb, ids, motion).per_pair["vl"]) == pytest.approx(float(ref["vl"]))
    # With distinct task ids, "instance" and "task" positives agree...
    assert float(by_instance(emb, ids).per_pair["vl"]) == pytest.approx(float(ref["vl"]))
    # ...and with repeated task ids they differ.
    same = torch.zeros(4, dtype=torch.long)
    assert float(by_instance(emb, same).per_pair["vl"]) != pytest.approx(float(base(emb, same).per_pair["vl"]))
    with pytest.raises(ValueError, match="motion ids"):
        by_motion(emb, ids)
    with pytest.raises(ValueError, match="la_positives"):
        LossConfig(la_positives="colour")


def test_schedules():
    assert cosine_schedule(0, 100, 0.2, 0.02) == pytest.approx(0.2)
    assert cosine_schedule(50, 100, 0.2, 0.02) == pytest.approx(0.11)
    assert cosine_schedule(100, 100, 0.2, 0.02) == pytest.approx(0.02)
    assert temperature_schedule("linear", 25, 100, 0.2, 0.1) == pytest.approx(0.175)
    with pytest.raises(ValueError, match="kind='exp'"):
        temperature_schedule("exp", 0, 10, 1, 1)
