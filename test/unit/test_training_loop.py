"""The training loop both trainers share: the learning-rate schedule, the optimiser's groups,
one log row per step, stopping, the non-finite check; the token table; the model factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vla_align_ros.config import ModelConfig
from vla_align_ros.model import TrimodalModel, create_loss, create_model
from vla_align_ros.training.loop import adamw, run_steps
from vla_align_ros.training.schedule import warmup_cosine_lr
from vla_align_ros.training.tokens import TokenTable

from conftest import MODEL_CONFIGS


def test_warmup_then_cosine():
    assert warmup_cosine_lr(0, 100, 10, 1e-3) == pytest.approx(1e-4)
    assert warmup_cosine_lr(10, 100, 10, 1e-3) == pytest.approx(1e-3)
    assert warmup_cosine_lr(55, 100, 10, 1e-3, 1e-4) == pytest.approx(5.5e-4)
    with pytest.raises(ValueError, match="total_steps=0"):
        warmup_cosine_lr(0, 0, 0, 1e-3)


def test_weight_decay_on_matrices_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt, params = adamw(model, 1e-3, 0.05)
    assert len(params) == 4
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 0.05), (3, 0.0)]


def quadratic(model: nn.Linear):
    def losses_at(step: int) -> dict[str, torch.Tensor]:
        a = model.weight.pow(2).sum()
        b = model.bias.pow(2).sum()
        return {"a": a, "b": b, "total": a + b}
    return losses_at


def test_one_row_per_step_with_the_schedule_and_a_stop():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt, params = adamw(model, 0.1, 0.0)
    log: list[dict[str, float]] = []
    seen = []

    def after_step(step: int, row: dict[str, float], rate: float) -> bool:
        seen.append(step)
        return step == 5

    end = run_steps(opt, params, 2, 10, 10, 0.1, 3, quadratic(model), log, progress=False, after_step=after_step)
    assert end == 6 and seen == [2, 3, 4, 5]
    assert [r["step"] for r in log] == [2, 3, 4, 5] and list(log[0]) == ["step", "lr", "a", "b", "total"]
    assert [r["lr"] for r in log] == [warmup_cosine_lr(s, 10, 3, 0.1, 0.005) for s in range(2, 6)]
    assert log[-1]["total"] < log[0]["total"]


def test_a_non_finite_loss_stops_with_the_step_and_every_term():
    model = nn.Linear(3, 2)
    opt, params = adamw(model, 0.1, 0.0)

    def losses_at(step: int) -> dict[str, torch.Tensor]:
        bad = model.weight.sum() * float("nan") if step == 1 else model.weight.sum()
        return {"bad": bad, "total": bad}

    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 1: .*'bad': nan"):
        run_steps(opt, params, 0, 3, 3, 0.1, 0, losses_at, [], progress=False)


@pytest.fixture(scope="module")
def tiny() -> ModelConfig:
    return ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")


def test_the_token_table_trims_to_the_batch(tiny):
    model = create_model(tiny)
    table = TokenTable(model, ["pick up the red cube", "push the blue cube to the left of the green plate"])
    short, mask = table(["pick up the red cube"])
    full = model.tokenize(["pick up the red cube"])
    assert torch.equal(short, full["input_ids"][:, : short.shape[1]]) and bool(mask.all())
    ids, mask = table(["", "push the blue cube to the left of the green plate"])
    assert ids.shape[1] > short.shape[1] and int(mask[0].sum()) == 2  # the empty text: its two special tokens


def test_the_factory_builds_what_the_constructors_build(tiny):
    torch.manual_seed(0)
    a = create_model(tiny)
    torch.manual_seed(0)
    b = TrimodalModel(tiny)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    loss = create_loss(tiny)
    assert loss.state_dict().keys() == a.loss.state_dict().keys()
    assert all(torch.equal(x, y) for x, y in zip(loss.state_dict().values(), a.loss.state_dict().values()))
