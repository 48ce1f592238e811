"""Dual vision backbone (SigLIP + DINOv2), fused by concatenation or a learned gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import transformers
from torch import Tensor

from vla_align_ros.config import ModelConfig, VisionConfig
from vla_align_ros.model.checkpoint import load_checkpoint, save_checkpoint
from vla_align_ros.model.trimodal import TrimodalModel
from vla_align_ros.model.vision import GatedFusion, VisionEncoder
from conftest import PACKAGE_DIR

SHIPPED = PACKAGE_DIR / "models" / "sim_tiny" / "checkpoint"
SIM_TINY = PACKAGE_DIR / "config" / "train" / "sim_tiny.yaml"
SMALL = dict(kind="hf", hf_model_type="siglip", image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2)


def small_vision(**kw) -> VisionConfig:
    return VisionConfig(**{**SMALL, **kw})


def small_model_config(**vision) -> ModelConfig:
    return ModelConfig.from_dict({
        "vision": {**SMALL, **vision},
        "text": {"kind": "hf", "max_length": 16, "hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "action": {"horizon": 4, "action_dim": 7, "state_dim": 9, "hidden_size": 32},
        "projection": {"kind": "mlp", "embed_dim": 32, "hidden_size": 64},
        "heads": {"num_heads": 2, "policy_layers": 1, "temporal_layers": 1, "max_steps": 3},
    })


def images(n: int = 3, size: int = 32, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def model_inputs(model: TrimodalModel, n: int = 3) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    tok = model.tokenize(["put the red block on the blue plate", "pick the green block", "stack red on green"][:n])
    return {"images": images(n), **tok, "actions": torch.randn(n, 4, 7, generator=g),
            "state": torch.randn(n, 9, generator=g)}


def save_small_dinov2(folder: Path, patch_size: int) -> transformers.Dinov2Model:
    """A small DINOv2 saved as a local folder (a stand-in for a pretrained download)."""
    conf = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=4,
                                     image_size=32, patch_size=patch_size)
    torch.manual_seed(5)
    model = transformers.Dinov2Model(conf)
    model.save_pretrained(str(folder))
    return model


# ---- the shipped model and the default config are unchanged --------------------------------------------------

def test_shipped_sim_tiny_loads_strictly_with_unchanged_outputs():
    model = load_checkpoint(SHIPPED).eval()  # strict: any added or renamed parameter fails here
    assert model.vision.second_backbone is None and model.vision.fusion is None
    assert model.cfg.vision.second_backbone is None and model.cfg.vision.fusion == "concat"
    assert not any(k.startswith(("vision.second_backbone", "vision.fusion")) for k in model.state_dict())
    with torch.no_grad():
        vis = model.encode_image(images(2, size=96))
        emb = model.proj_vision(vis.pooled)
    assert tuple(vis.patches.shape) == (2, 144, 96) and tuple(vis.pooled.shape) == (2, 96)
    # Reference: the shipped weights (trained from robot topics only, sha256 f113d4c9...) loaded by
    # this code; the dual-backbone option leaves a single-backbone model's outputs as they were.
    torch.testing.assert_close(emb[0, :5], torch.tensor([0.035626, 0.142579, -0.060391, -0.012973, -0.219595]),
                               atol=2e-5, rtol=0)
    assert float(emb.double().sum()) == pytest.approx(0.2739963446820184, abs=1e-4)
    assert float(vis.patches.double().sum()) == pytest.approx(5.468748776089342, abs=1e-2)


def test_default_config_builds_the_same_parameter_names_as_the_shipped_model():
    from vla_align_ros.training.trainer import TrainConfig

    cfg = TrainConfig.from_yaml(SIM_TINY).model
    assert cfg.vision.second_backbone is None
    built = TrimodalModel(cfg, load_pretrained=False)
    shipped = load_checkpoint(SHIPPED)
    assert list(built.state_dict()) == list(shipped.state_dict())
    assert built.vision.patch_dim == built.vision.pooled_dim == 96


# ---- fusion --------------------------------------------------------------------------------------------------

def test_concat_stacks_both_backbones_channels():
    enc = VisionEncoder(small_vision(second_backbone="dinov2", fusion="concat"), load_pretrained=False).eval()
    assert isinstance(enc.backbone.model, transformers.SiglipVisionModel)
    assert isinstance(enc.second_backbone.model, transformers.Dinov2Model)
    assert enc.patch_dim == enc.pooled_dim == 64 and enc.fusion is None
    with torch.no_grad():
        pixels = enc.preprocess(images())
        out = enc.encode(pixels)
        a, b = enc.backbone(pixels), enc.second_backbone(pixels)
    assert tuple(out.patches.shape) == (3, 16, 64) and tuple(out.pooled.shape) == (3, 64) and out.grid == (4, 4)
    # DINOv2's CLS token is dropped from the patches: 16 of its 17 tokens, the last ones.
    assert torch.equal(out.patches[..., :32], a.patches) and torch.equal(out.patches[..., 32:], b.patches)
    assert torch.equal(out.pooled[:, :32], a.pooled) and torch.equal(out.pooled[:, 32:], b.pooled)


def test_gate_keeps_the_first_width_and_starts_as_an_even_mix():
    enc = VisionEncoder(small_vision(second_backbone="dinov2", fusion="gate"), load_pretrained=False).eval()
    assert enc.patch_dim == enc.pooled_dim == 32
    assert isinstance(enc.fusion.patches, GatedFusion) and isinstance(enc.fusion.pooled, GatedFusion)
    with torch.no_grad():
        pixels = enc.preprocess(images())
        out = enc.encode(pixels)
        a, b = enc.backbone(pixels), enc.second_backbone(pixels)
        g, b_proj = enc.fusion.patches.gate_values(a.patches, b.patches)
        gp, bp_proj = enc.fusion.pooled.gate_values(a.pooled, b.pooled)
    assert tuple(out.patches.shape) == (3, 16, 32) and tuple(out.pooled.shape) == (3, 32)
    assert tuple(g.shape) == (3, 16, 32) and tuple(gp.shape) == (3, 32)
    for gate in (g, gp):
        assert bool(((gate > 0) & (gate < 1)).all())
        assert float((gate - 0.5).abs().max()) < 0.1  # near 0.5 ...
        assert float(gate.std()) > 1e-4  # ... but already depends on the features
    torch.testing.assert_close(out.patches, g * a.patches + (1 - g) * b_proj)
    torch.testing.assert_close(out.pooled, gp * a.pooled + (1 - gp) * bp_proj)


def test_gate_values_follow_a_large_bias():
    fusion = GatedFusion(4, 6)
    with torch.no_grad():
        fusion.gate.bias.fill_(8.0)
    a, b = torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    with torch.no_grad():
        g, _ = fusion.gate_values(a, b)
    assert float(g.min()) > 0.99 and float(g.max()) < 1.0
    torch.testing.assert_close(fusion(a, b), g * a + (1 - g) * fusion.proj(b))


@pytest.mark.parametrize("fusion", ["concat", "gate"])
def test_gradients_reach_both_backbones(fusion):
    torch.manual_seed(0)
    model = TrimodalModel(small_model_config(second_backbone="dinov2", fusion=fusion), load_pretrained=False)
    inputs = model_inputs(model)
    vis = model.encode_image(inputs["images"])
    emb = model(**inputs)
    target = torch.randn(emb.vision.shape, generator=torch.Generator().manual_seed(2))
    loss = (emb.vision * target).sum() + model.patch_proj(vis.patches).pow(2).mean()
    loss.backward()

    def grad_norm(module: torch.nn.Module) -> float:
        return float(torch.sqrt(sum(p.grad.pow(2).sum() for p in module.parameters() if p.grad is not None)))

    assert grad_norm(model.vision.backbone) > 0
    assert grad_norm(model.vision.second_backbone) > 0
    if fusion == "gate":
        assert grad_norm(model.vision.fusion.patches.gate) > 0 and grad_norm(model.vision.fusion.pooled.proj) > 0


def test_freeze_freezes_both_backbones_not_the_gate():
    enc = VisionEncoder(small_vision(second_backbone="dinov2", fusion="gate", freeze=True), load_pretrained=False)
    enc.train()
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert not any(p.requires_grad for p in enc.second_backbone.parameters())
    assert all(p.requires_grad for p in enc.fusion.parameters())
    assert not enc.backbone.training and not enc.second_backbone.training and enc.fusion.training


# ---- errors --------------------------------------------------------------------------------------------------

def test_bad_fusion_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"vision\.fusion='sum': must be one of \('concat', 'gate'\)"):
        small_vision(second_backbone="dinov2", fusion="sum")
    with pytest.raises(ValueError, match=r"vision\.second_backbone='resnet'"):
        small_vision(second_backbone="resnet")
    with pytest.raises(ValueError, match=r"vision\.second_name_or_path.*needs vision\.second_backbone"):
        small_vision(second_name_or_path="/some/folder")


def test_a_second_backbone_with_another_patch_grid_is_refused(tmp_path):
    save_small_dinov2(tmp_path / "dino16", patch_size=16)
    cfg = small_vision(second_backbone="dinov2", second_name_or_path=str(tmp_path / "dino16"))
    with pytest.raises(ValueError, match=r"patch grid 2x2 \(image_size 32, patch_size 16\) differs from the first "
                                         r"backbone's 4x4 \(image_size 32, patch_size 8\)"):
        VisionEncoder(cfg)
    recorded = small_vision(second_backbone="dinov2",
                            second_backbone_config={**VisionEncoder(small_vision(second_backbone="dinov2"), False)
                                                    .cfg.second_backbone_config, "image_size": 48})
    with pytest.raises(ValueError, match=r"same image size and patch size"):
        VisionEncoder(recorded, load_pretrained=False)


# ---- loading and checkpoints ---------------------------------------------------------------------------------

def test_second_backbone_from_a_local_folder(tmp_path):
    saved = save_small_dinov2(tmp_path / "dino", patch_size=8)
    enc = VisionEncoder(small_vision(second_backbone="dinov2", second_name_or_path=str(tmp_path / "dino")))
    for k, v in saved.state_dict().items():
        assert torch.equal(enc.second_backbone.model.state_dict()[k], v), k
    assert enc.cfg.second_backbone_config["model_type"] == "dinov2"
    with pytest.raises(ValueError, match=r"vision\.second_backbone='siglip', but the model built from .* is a 'dinov2'"):
        VisionEncoder(small_vision(second_backbone="siglip", second_name_or_path=str(tmp_path / "dino")))


def _no_model_loading(*args, **kwargs):
    raise AssertionError(f"a model's from_pretrained was called while loading a checkpoint: {args} {kwargs}")


def _config_only_from(root: Path):
    """AutoConfig.from_pretrained allowed only inside ``root`` (the checkpoint's own tokenizer)."""
    original = transformers.AutoConfig.from_pretrained.__func__

    def guarded(cls, path, *args, **kwargs):
        if not Path(path).resolve().is_relative_to(root.resolve()):
            raise AssertionError(f"AutoConfig.from_pretrained({path!r}) while loading a checkpoint")
        return original(cls, path, *args, **kwargs)
    return classmethod(guarded)


@pytest.mark.parametrize("fusion", ["concat", "gate"])
def test_checkpoint_round_trip_gives_identical_outputs(fusion, tmp_path, monkeypatch):
    folder = tmp_path / "dino"
    save_small_dinov2(folder, patch_size=8)
    torch.manual_seed(0)
    cfg = small_model_config(second_backbone="dinov2", fusion=fusion, second_name_or_path=str(folder))
    model = TrimodalModel(cfg).eval()
    if fusion == "gate":
        with torch.no_grad():  # a trained-looking gate, not its initial near-even mix
            model.vision.fusion.patches.gate.bias.normal_(0, 2.0)
    save_checkpoint(model, tmp_path / "ckpt")
    shutil.rmtree(folder)  # the checkpoint alone must be enough
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(_no_model_loading))
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", _config_only_from(tmp_path / "ckpt"))
    loaded = load_checkpoint(tmp_path / "ckpt").eval()
    monkeypatch.undo()
    assert loaded.cfg.vision.second_backbone == "dinov2" and loaded.cfg.vision.fusion == fusion
    assert list(loaded.state_dict()) == list(model.state_dict())
    inputs = model_inputs(model)
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
        va, vb = model.encode_image(inputs["images"]), loaded.encode_image(inputs["images"])
    for x, y in ((a.vision, b.vision), (a.text, b.text), (a.action, b.action), (va.patches, vb.patches)):
        assert torch.equal(x, y)


# ---- training ------------------------------------------------------------------------------------------------

def test_sim_tiny_recipe_with_a_gated_dinov2_trains(tmp_path):
    from vla_align_ros.sim.record import record_episodes
    from vla_align_ros.training.ablation import variant_config
    from vla_align_ros.training.trainer import TrainConfig, train

    record_episodes(tmp_path / "bags", episodes=4, seed=0, families=["place", "pick_then_place"], image_size=(32, 32),
                    progress=False)
    over = {"model": {"vision": {"second_backbone": "dinov2", "fusion": "gate"}}, "batch_size": 8,
            "data": {"hold_out": [], "val_fraction": 0.0}}
    cfg = variant_config(TrainConfig.from_yaml(SIM_TINY), over, steps=2)
    result = train([tmp_path / "bags"], cfg, tmp_path / "run", progress=False)
    assert result["finished"] and len(result["log"]) == 2
    assert all(torch.isfinite(torch.tensor(row["total"])) for row in result["log"])
    torch.manual_seed(cfg.seed)  # the trainer's initial weights, rebuilt
    init = TrimodalModel(cfg.model).state_dict()
    trained = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert isinstance(trained.vision.second_backbone.model, transformers.Dinov2Model)
    assert trained.vision.patch_dim == 96 and trained.cfg.vision.second_backbone_config["model_type"] == "dinov2"
    state = trained.state_dict()
    for prefix in ("vision.backbone.", "vision.second_backbone.", "vision.fusion."):
        moved = [k for k in state if k.startswith(prefix) and not torch.equal(state[k], init[k])]
        assert moved, f"no parameter under {prefix} changed in training"
