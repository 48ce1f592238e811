"""The objective's registry of loss terms: each term has a weight, owns its batch fields, is
zero when off, and the total is the weighted sum; a new term joins by registration alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vla_align_ros.config import ModelConfig
from vla_align_ros.model import create_model
from vla_align_ros.training.objective import (LOSS_TERMS, SHARED_FIELDS, TOTAL_ORDER, Batch, LossTerm,
                                              ObjectiveWeights, TermInputs, compute_losses, register_term)

from conftest import MODEL_CONFIGS

B, K, H = 4, 2, 64  # samples, steps per instruction, image side


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    cfg.heads.role_pool = True
    torch.manual_seed(0)
    return create_model(cfg).train()


def batch(model, pick: bool = False) -> Batch:
    """A random batch of B frames; ``pick``: with keyframe pixels (the affordance term's data)."""
    g = torch.Generator().manual_seed(1)
    tok = model.tokenize(["put the red cube on the blue plate", "pick up the green cube",
                          "push the blue cube left", "put the yellow cube on the red plate"])
    steps = model.tokenize(["pick up the red cube", "put it on the blue plate"] * B)
    masks = torch.zeros(B, H, H, dtype=torch.bool)
    masks[:, 10:30, 20:40] = True
    px = torch.tensor([[20.0, 30.0]]).repeat(B, 1)
    return Batch(images=torch.randint(0, 256, (B, H, H, 3), dtype=torch.uint8, generator=g),
                 input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                 actions=torch.randn(B, 8, 4, generator=g), state=torch.randn(B, 4, generator=g),
                 step_ids=steps["input_ids"].view(B, K, -1), step_attn=steps["attention_mask"].view(B, K, -1),
                 step_index=torch.tensor([0, 1, 0, 1]), ids=torch.tensor([0, 1, 2, 3]),
                 motion_ids=torch.tensor([0, 1, 2, 0]), masks=masks, has_mask=torch.tensor([True, True, False, True]),
                 target_masks=~masks, has_target=torch.tensor([True, False, False, True]),
                 pick_px=px if pick else None, place_px=px + 5 if pick else None,
                 step_valid=torch.ones(B, K, dtype=torch.bool), progress=torch.rand(B, generator=g))


def test_every_batch_field_is_owned_by_one_term_or_the_shared_pass():
    owners: dict[str, list[str]] = {}
    for name, term in LOSS_TERMS.items():
        for f in term.fields:
            owners.setdefault(f, []).append(name)
    for f in SHARED_FIELDS:
        owners.setdefault(f, []).append("shared")
    fields = {f.name for f in dataclasses.fields(Batch)}
    assert set(owners) == fields
    assert all(len(v) == 1 for v in owners.values()), {k: v for k, v in owners.items() if len(v) > 1}


def test_every_term_has_a_weight_and_a_place_in_the_total():
    weights = {f.name for f in dataclasses.fields(ObjectiveWeights)}
    assert set(LOSS_TERMS) <= weights
    assert sorted(TOTAL_ORDER) == sorted(LOSS_TERMS)
    assert list(LOSS_TERMS)[:5] == ["contrastive", "spatial", "affordance", "phrase", "target"]


def test_off_terms_are_zero_and_the_total_is_the_weighted_sum(model):
    w = ObjectiveWeights(contrastive=1.0, spatial=2.0, target=0.5, temporal=0.5, segments=0.5, policy=1.0)
    out = compute_losses(model, batch(model), w)
    assert list(out) == [*LOSS_TERMS, "total"]
    for name in ("affordance", "phrase", "geometry", "object_level", "patch_word", "consistency", "adversarial",
                 "segments"):  # off, or without their data (no motions here)
        assert float(out[name]) == 0.0, name
    for name in ("contrastive", "spatial", "target", "temporal", "policy"):
        assert float(out[name].detach()) > 0, name
    expected = sum(getattr(w, n) * float(out[n].detach()) for n in TOTAL_ORDER if getattr(w, n) > 0)
    assert float(out["total"].detach()) == pytest.approx(expected, rel=1e-6)


def test_the_affordance_term_computes_spatial_and_target_in_its_grounding_pass(model):
    w = ObjectiveWeights(affordance=1.0, target=1.0)
    plain = compute_losses(model, batch(model), w)
    keyframes = compute_losses(model, batch(model, pick=True), w)
    # the same batch's keys, in the order the terms ran: with keyframes target runs before phrase
    assert list(keyframes)[:5] == ["contrastive", "spatial", "affordance", "target", "phrase"]
    assert list(plain)[:5] == ["contrastive", "spatial", "affordance", "phrase", "target"]
    assert float(plain["affordance"]) == 0.0 and float(keyframes["affordance"].detach()) > 0
    # the role pass's mask loss is the plain one: per frame with a mask, averaged over the whole batch
    assert float(keyframes["spatial"].detach()) == pytest.approx(float(plain["spatial"].detach()), rel=1e-6)


def test_a_registered_term_is_computed_weighted_and_logged(model, monkeypatch):
    with pytest.raises(ValueError, match="no weight"):
        @register_term
        class Unweighted(LossTerm):
            name = "no_such_weight"

    @dataclasses.dataclass
    class Weights(ObjectiveWeights):
        action_norm: float = 0.0

    class ActionNorm(LossTerm):
        """The mean squared normalised action (a probe)."""

        name = "action_norm"

        def compute(self, f: TermInputs) -> dict[str, torch.Tensor]:
            return {self.name: f.actions.pow(2).mean()}

    monkeypatch.setattr("vla_align_ros.training.objective.ObjectiveWeights", Weights)
    register_term(ActionNorm)
    try:
        with pytest.raises(ValueError, match="taken"):
            register_term(ActionNorm)
        w = Weights(spatial=0.0, temporal=0.0, segments=0.0, policy=0.0, action_norm=3.0)
        out = compute_losses(model, batch(model), w)
        assert list(out)[-2:] == ["action_norm", "total"]
        assert float(out["total"].detach()) == pytest.approx(
            float(out["contrastive"].detach()) + 3.0 * float(out["action_norm"].detach()), rel=1e-6)
    finally:
        LOSS_TERMS.pop("action_norm", None)
