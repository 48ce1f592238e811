"""Config validation: bad values raise ValueError naming the field; YAML files in config/ load."""

from __future__ import annotations


import pytest

from vla_align_ros.config import ActionConfig, LossConfig, ModelConfig, VisionConfig
from conftest import MODEL_CONFIGS



@pytest.mark.parametrize("make, match", [
    (lambda: VisionConfig(kind="resnet"), "vision.kind='resnet'"),
    (lambda: VisionConfig(image_size=60, patch_size=8), "vision.image_size=60"),
    (lambda: ActionConfig(horizon=0), "action.horizon=0"),
    (lambda: LossConfig(vl="triplet"), "loss.vl='triplet'"),
    (lambda: LossConfig(alpha=0, beta=0, gamma=0), "at least one pair weight"),
    (lambda: LossConfig(init_temperature=0.0), "loss.init_temperature=0.0"),
    (lambda: LossConfig(hard_negatives=4, memory_bank=64), "cannot be combined with loss.memory_bank"),
])
def test_invalid_values_name_the_field(make, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match=r"vision\.: unknown keys \['colour'\]"):
        ModelConfig.from_dict({"vision": {"colour": 1}})


@pytest.mark.parametrize("path", sorted(MODEL_CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_model_configs_parse(path):
    cfg = ModelConfig.from_yaml(path)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_config_names_resolve_from_any_folder(tmp_path, monkeypatch):
    from vla_align_ros.paths import config_file, package_config

    monkeypatch.chdir(tmp_path)
    recipe = package_config("train/sim_tiny.yaml")
    assert config_file("train/sim_tiny.yaml") == recipe == config_file("config/train/sim_tiny.yaml")
    own = tmp_path / "train" / "sim_tiny.yaml"  # a file of that name here wins over the package's
    own.parent.mkdir()
    own.write_text("steps: 1\n")
    assert config_file("train/sim_tiny.yaml").resolve() == own
    with pytest.raises(FileNotFoundError, match="'train/nope.yaml': not a file here .* nor in the package"):
        config_file("train/nope.yaml")
