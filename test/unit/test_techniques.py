"""The alignment techniques' mechanics: one-attribute negatives, temperature schedule and
per-sample temperature, gap centring and penalty, retrieval-time hubness corrections, the
object and patch-word levels, augmentation, adversarial images and the curriculum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla_align_ros.config import LossConfig
from vla_align_ros.sim.rules_policy import parse_instruction
from vla_align_ros.data.attributes import (AttributeNegatives, attribute_variants, names_held_out,
                                           sample_attribute_negatives)
from vla_align_ros.losses.contrastive import info_nce_directional
from vla_align_ros.losses.temperature import adaptive_log_scale, row_difficulty
from vla_align_ros.losses.trimodal import TrimodalLoss
from vla_align_ros.metrics.geometry import hubness
from vla_align_ros.metrics.retrieval import corrected_scores, retrieval_scores
from vla_align_ros.sim.tasks import FAMILIES, make_task
from vla_align_ros.training.techniques import (CurriculumConfig, RobustnessConfig, adversarial_images,
                                               augment_images, curriculum_indices, instruction_difficulty,
                                               mask_pool, patch_word_scores)
from conftest import PACKAGE_DIR

CUBES = ["red_cube", "green_cube", "blue_cube"]
PLATES = ["yellow_plate", "blue_plate"]


def _tasks(n: int = 120):
    rng = np.random.default_rng(0)
    return [make_task(FAMILIES[i % len(FAMILIES)], rng, CUBES, PLATES) for i in range(n)]


# ---- one-attribute negatives -------------------------------------------------------------
def test_every_variant_changes_exactly_one_attribute_of_the_parsed_task():
    for task in _tasks():
        text = task.instruction
        goals = parse_instruction(text)
        variants = attribute_variants(text)
        assert variants["colour"] and variants["object"] and variants["verb"], text
        for attr, vs in variants.items():
            for v in vs:
                assert v != text, text
                if attr == "verb":  # the leading verb phrase swapped, the rest kept
                    assert v.split()[:2] != text.split()[:2] and v.split()[-3:] == text.split()[-3:], (text, v)
                    continue
                changed = [(a, b) for a, b in zip(text.split(), v.split()) if a != b]
                assert len(v.split()) == len(text.split()) and len(changed) == 1, (text, v)
                if attr in ("colour", "target"):  # another object, same action
                    other = parse_instruction(v)
                    assert [g.kind for g in other] == [g.kind for g in goals] and other != goals
        if task.family == "push":
            (flip,) = variants["direction"]
            assert parse_instruction(flip)[0].direction == -goals[0].direction


def test_sampled_negatives_are_distinct_variants_spread_over_attributes():
    text = "put the red cube on the blue plate"
    picked = sample_attribute_negatives(text, 4, np.random.default_rng(1))
    assert len(set(picked)) == 4
    by_attr = attribute_variants(text)
    owners = {a for p in picked for a, vs in by_attr.items() if p in vs}
    assert len(owners) == 4  # round robin: one per attribute the text has
    assert sample_attribute_negatives(text, 4, np.random.default_rng(1)) == picked


def test_negatives_never_show_a_held_out_composition():
    texts = [t.instruction for t in _tasks() if not names_held_out(t.instruction, ["target=yellow_plate"])]
    negs = AttributeNegatives(texts, ["target=yellow_plate"])
    all_v = negs.all_texts()
    assert all_v and not any(names_held_out(v, ["target=yellow_plate"]) for v in all_v)
    unfiltered = {v for t in texts for vs in attribute_variants(t).values() for v in vs}
    assert any("on the yellow" in v or "onto the yellow" in v for v in unfiltered)  # there was something to drop
    drawn = negs.sample(texts[:5], 6, np.random.default_rng(0))
    assert len(drawn) == 30 and all(d in negs.variants[t] for i, t in enumerate(texts[:5]) for d in drawn[6 * i: 6 * i + 6])
    assert names_held_out("put the red block onto the yellow dish", ["target=yellow_plate"])
    assert not names_held_out("put the yellow cube on the red plate", ["target=yellow_plate"])
    assert names_held_out("stack the red cube on the green cube", ["instruction~^stack"])


def test_a_row_negative_equal_to_the_positive_costs_exactly_log_2():
    x = F.normalize(torch.randn(1, 8), dim=-1)
    base = info_nce_directional(x, x, torch.tensor(math.log(10.0)))
    assert float(base) == pytest.approx(0.0, abs=1e-6)  # one candidate: the positive
    with_neg = info_nce_directional(x, x, torch.tensor(math.log(10.0)), row_negatives=x[:, None, :])
    assert float(with_neg) == pytest.approx(math.log(2.0), abs=1e-5)


# ---- temperature -------------------------------------------------------------------------
def test_scheduled_temperature_goes_from_start_to_end_and_is_not_learned():
    loss = TrimodalLoss(LossConfig(temperature_schedule="cosine", temperature_start=0.2, temperature_end=0.05), 16)
    assert not loss.temps["vl"].logit_scale.requires_grad
    loss.set_progress(0, 100)
    assert float(loss.temps["vl"].scale().exp()) == pytest.approx(5.0, rel=1e-5)
    loss.set_progress(50, 100)
    assert float(loss.temps["va"].scale().exp()) == pytest.approx(1 / 0.125, rel=1e-5)
    loss.set_progress(100, 100)
    assert float(loss.temps["la"].scale().exp()) == pytest.approx(20.0, rel=1e-5)
    learned = TrimodalLoss(LossConfig(), 16)
    learned.set_progress(100, 100)  # no schedule: the learnable temperature is untouched
    assert learned.temps["vl"].logit_scale.requires_grad
    assert float(learned.temps["vl"].scale().detach().exp()) == pytest.approx(1 / 0.07, rel=1e-5)


def test_harder_rows_get_a_sharper_temperature():
    y = torch.eye(4)
    x = F.normalize(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0.9, 0], [0, 0, 1.0, 0.1], [0, 0, 0, 1.0]]), dim=-1)
    ids = torch.arange(4)
    d = row_difficulty(x, y, ids, ids)
    assert int(d.argmax()) == 1 and float(d[1]) > float(d[0])  # row 1's hardest negative is close
    s = adaptive_log_scale(torch.tensor(2.0), x, y, ids, ids, strength=0.5)  # (4, 1)
    assert s.shape == (4, 1) and int(s.argmax()) == 1
    assert float((s - 2.0).abs().max()) <= 0.5 * 2.0 + 1e-6  # z clamped to +-2
    cfg = LossConfig(adaptive_temperature=0.5)
    a = TrimodalLoss(cfg, 4).pair_loss("vl", x, y, ids).detach()
    b = TrimodalLoss(LossConfig(), 4).pair_loss("vl", x, y, ids).detach()
    assert torch.isfinite(a) and float(a) != pytest.approx(float(b))


# ---- modality gap ------------------------------------------------------------------------
@torch.no_grad()
def test_centring_makes_the_loss_blind_to_a_shared_offset():
    torch.manual_seed(0)
    x, y = F.normalize(torch.randn(8, 16), dim=-1), F.normalize(torch.randn(8, 16), dim=-1)
    ids = torch.arange(8)
    offset = torch.randn(16) * 3
    centred = TrimodalLoss(LossConfig(centre=True), 16)
    assert float(centred.pair_loss("vl", x + offset, y, ids)) == pytest.approx(float(centred.pair_loss("vl", x, y, ids)),
                                                                                 rel=1e-5)
    plain = TrimodalLoss(LossConfig(), 16)
    assert float(plain.pair_loss("vl", x + offset, y, ids)) != pytest.approx(float(plain.pair_loss("vl", x, y, ids)),
                                                                               rel=1e-3)


def test_gap_penalty_is_the_squared_distance_of_the_means_and_its_gradient_closes_the_gap():
    torch.manual_seed(0)
    v = F.normalize(torch.randn(16, 8) + 2.0, dim=-1).requires_grad_(True)
    t = F.normalize(torch.randn(16, 8) - 2.0, dim=-1)
    a = F.normalize(torch.randn(16, 8), dim=-1)
    loss = TrimodalLoss(LossConfig(gap_penalty=1.0, beta=0.0, gamma=0.0), 8)
    out = loss({"vision": v, "text": t, "action": a}, torch.arange(16))
    gap = (v.mean(0) - t.mean(0)).pow(2).sum()
    assert float(out.per_pair["vl_gap"].detach()) == pytest.approx(float(gap.detach()), rel=1e-6)
    (g,) = torch.autograd.grad(out.per_pair["vl_gap"], v)
    moved = v.detach() - 0.5 * g
    assert float((moved.mean(0) - t.mean(0)).pow(2).sum()) < float(gap.detach())


# ---- retrieval-time corrections ----------------------------------------------------------
def _hub_example():
    """Eight queries, each with its own gallery item (cosine 0.67), and one gallery hub that is
    closer to every query (cosine 0.74) and belongs to none."""
    e = torch.eye(16)
    queries = F.normalize(e[15] + 0.9 * e[:8], dim=-1)  # (8, 16)
    gallery = torch.cat([e[:8], e[15:16]])  # (9, 16)
    return queries, gallery, torch.arange(8), torch.cat([torch.arange(8), torch.tensor([99])])


def test_csls_and_inverted_softmax_demote_a_hub():
    q, g, qi, gi = _hub_example()
    raw = retrieval_scores(q, g, qi, gi).r1
    csls = retrieval_scores(q, g, qi, gi, "csls").r1
    inv = retrieval_scores(q, g, qi, gi, "inverted_softmax").r1
    assert raw == 0.0 and csls == 1.0 and inv == 1.0
    assert hubness(q, g, k=1, correction="csls")["max_occurrence_over_k"] < hubness(q, g, k=1)["max_occurrence_over_k"]


def test_centred_scores_ignore_a_modality_offset_and_bad_names_fail():
    torch.manual_seed(0)
    q, g = torch.randn(6, 8), torch.randn(5, 8)
    assert torch.allclose(corrected_scores(q + 5.0, g, "centred"), corrected_scores(q, g, "centred"), atol=1e-5)
    with pytest.raises(ValueError, match="csls"):
        corrected_scores(q, g, "cls")


# ---- object and patch-word levels ---------------------------------------------------------
def test_mask_pool_takes_the_patches_under_the_mask():
    patches = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # (B, Np=2x2, C)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, 4:] = True  # exactly patch (0, 1)
    masks[1, 4:, :] = True  # patches (1, 0) and (1, 1)
    pooled = mask_pool(patches, masks, (2, 2))
    assert torch.allclose(pooled[0], patches[0, 1])
    assert torch.allclose(pooled[1], patches[1, 2:].mean(0))


def test_patch_word_score_is_each_words_best_patch_averaged_over_real_words():
    e = torch.eye(4)
    patches = e[None, :3]  # one image with patches e0, e1, e2
    words = torch.stack([torch.stack([e[0], e[1], e[3]]), torch.stack([e[3], e[3], e[2]])])  # (2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    s = patch_word_scores(patches, words, mask)  # (1, 2)
    assert s.shape == (1, 2)
    assert float(s[0, 0]) == pytest.approx(1.0)  # e0, e1 found; the padded e3 is ignored
    assert float(s[0, 1]) == pytest.approx(0.5)  # e3 has no patch, e2 does


# ---- robustness ---------------------------------------------------------------------------
def test_augmented_views_are_bounded_seeded_and_the_identity_when_ranges_are_zero():
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    cfg = RobustnessConfig()
    a = augment_images(images, cfg, torch.Generator().manual_seed(0))
    b = augment_images(images, cfg, torch.Generator().manual_seed(0))
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert float((a - images.permute(0, 3, 1, 2) / 255.0).abs().mean()) > 0.01
    same = augment_images(images, RobustnessConfig(crop_scale=1.0, brightness=0.0, contrast=0.0))
    assert torch.allclose(same, images.permute(0, 3, 1, 2) / 255.0, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 5])
def test_adversarial_images_stay_within_eps_and_raise_the_loss(steps):
    torch.manual_seed(0)
    images = torch.randint(10, 246, (4, 8, 8, 3), dtype=torch.uint8)
    w = torch.randn(3, 8, 8)

    def loss_of(px):
        return ((px - 0.5) * w).sum(dim=(1, 2, 3)).pow(2).mean()

    cfg = RobustnessConfig(adv_eps=4 / 255, adv_steps=steps)
    adv = adversarial_images(images, loss_of, cfg)
    clean = images.permute(0, 3, 1, 2) / 255.0
    assert float((adv - clean).abs().max()) <= 4 / 255 + 1e-6
    assert float(loss_of(adv)) > float(loss_of(clean))
    assert not adv.requires_grad


# ---- curriculum ---------------------------------------------------------------------------
def test_curriculum_starts_with_the_easiest_and_admits_everything_by_until():
    tasks = _tasks()
    diff = torch.tensor([instruction_difficulty(t.instruction, len(t.steps)) for t in tasks])
    by_family = {t.family: int(d) for t, d in zip(tasks, diff)}
    assert by_family["pick"] == by_family["push"] == 2 and by_family["place"] == 3
    assert by_family["pick_then_place"] == 4 and by_family["place_two"] == 6
    cfg = CurriculumConfig(until=0.5, start=0.3)
    first = curriculum_indices(diff, 16, seed=0, step=0, total_steps=100, cfg=cfg)
    assert int(diff[first].max()) <= int(diff.sort().values[int(0.3 * len(diff)) - 1])
    seen = torch.cat([curriculum_indices(diff, 16, 0, s, 100, cfg) for s in range(50, 100)])
    assert int(diff[seen].max()) == 6 and len(seen.unique()) > len(diff) // 2
    assert torch.equal(first, curriculum_indices(diff, 16, seed=0, step=0, total_steps=100, cfg=cfg))
    with pytest.raises(ValueError, match="curriculum"):
        CurriculumConfig(until=1.5)


def test_the_ablation_config_has_a_valid_variant_for_every_technique():

    from vla_align_ros.training.ablation import AblationConfig, variant_config
    from vla_align_ros.training.trainer import TrainConfig

    root = PACKAGE_DIR / "config"
    cfg = AblationConfig.from_yaml(root / "ablation" / "sim_tiny.yaml")
    base = TrainConfig.from_yaml(root / "train" / "sim_tiny_ground_truth.yaml")  # the ablation's base
    built = {name: variant_config(base, over, cfg.steps) for name, over in cfg.variants.items()}  # raises on a typo
    for technique in ("siglip", "hard_negatives", "memory_bank", "attribute_negatives", "no_multi_positive",
                      "temperature_cosine", "adaptive_temperature", "centre", "gap_penalty", "object_level",
                      "patch_word", "dual_concat", "dual_gate", "curriculum", "consistency", "adversarial_fgsm",
                      "domain_randomisation", "no_warmup", "batch_64", "batch_128"):
        assert technique in built, technique
    assert built["dual_gate"].model.vision.fusion == "gate" and built["curriculum"].curriculum.until > 0
    assert (base.batch_size, built["batch_64"].batch_size, built["batch_128"].batch_size) == (32, 64, 128)
    assert cfg.variants["domain_randomisation"]["train_bags"] and all(b.steps == cfg.steps for b in built.values())
