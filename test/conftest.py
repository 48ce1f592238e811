"""Shared test environment and fixtures.

DDS stays on this machine, each run gets its own domain, and no model hub is contacted. Tests
live in two folders, each with its marker (added here from the folder):

- ``test/unit/`` (``unit``): pure, in one process, seconds: ``pytest -m "not ros"``;
- ``test/ros/`` (``ros``): integration, minutes: nodes in their own processes over DDS,
  ``ros2 launch``, the rosbag2 record -> train -> evaluate pipeline, and anything else that
  starts processes (the CLI, DDP ranks) or trains to convergence.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEST_DIR = Path(__file__).resolve().parent
REPO = TEST_DIR.parent
PACKAGE_DIR = REPO / "vla_align_ros"  # the ament_python package: setup.py, config/, launch/, models/, vla_align_ros/
CONFIG_DIR = PACKAGE_DIR / "config"
MODEL_CONFIGS = CONFIG_DIR / "model"
VENV_BIN = Path(sys.prefix) / "bin"
RESULT = "RESULT "  # a probe process prints its findings as one line: RESULT {json}
if str(PACKAGE_DIR) not in sys.path:
    sys.path.insert(0, str(PACKAGE_DIR))  # test the source tree (the venv holds an installed copy too)

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# A training recipe small enough for a test: {STEPS} is filled in by the test.
TINY = """
model:
  vision: {kind: hf, hf_model_type: siglip, image_size: 32, patch_size: 8, hidden_size: 32, num_layers: 1, num_heads: 2}
  text: {kind: hf, max_length: 24, hidden_size: 32, num_layers: 1, num_heads: 2}
  action: {horizon: 4, action_dim: 7, state_dim: 9, hidden_size: 32, velocity: true}
  projection: {kind: mlp, embed_dim: 32, hidden_size: 64}
  heads: {num_heads: 2, policy_layers: 1, temporal_layers: 1, max_steps: 3}
objective: {contrastive: 1.0, spatial: 1.0, phrase: 1.0, temporal: 0.5, policy: 1.0}
data: {hold_out: ["family=stack"], val_fraction: 0.0}
steps: STEPS
batch_size: 16
lr: 0.002
warmup: 2
checkpoint_every: 3
"""

# A model shaped like the simulator's (48 px frames, the Panda's 9 joints), untrained.
SIM_LIKE = """
vision: {kind: hf, hf_model_type: siglip, image_size: 48, patch_size: 8, hidden_size: 32, num_layers: 1, num_heads: 2}
text: {kind: hf, max_length: 24, hidden_size: 32, num_layers: 1, num_heads: 2}
action: {horizon: 4, action_dim: 7, state_dim: 9, hidden_size: 32, kind: mlp, velocity: true}
projection: {kind: linear, embed_dim: 32}
heads: {num_heads: 2, policy_layers: 1, temporal_layers: 1, max_steps: 4, fine_channels: 4, policy_relevance: true}
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets its folder's marker (``unit`` or ``ros``)."""
    for item in items:
        folder = Path(str(item.path)).resolve().relative_to(TEST_DIR).parts[0]
        if folder not in ("unit", "ros"):
            raise pytest.UsageError(f"{item.nodeid}: tests live in test/unit/ or test/ros/")
        item.add_marker(getattr(pytest.mark, folder))


def ros_env(offset: int) -> dict[str, str]:
    """The environment for a node process: DDS on this machine only, on a domain of its own
    (this run's domain shifted by ``offset``, so tests running nodes at once do not meet)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(int(env.get("ROS_DOMAIN_ID", "150")) % 100 + offset)
    return env


def probe_result(output: str | Sequence[str], *context: str) -> Any:
    """The JSON of the last ``RESULT {json}`` line a probe process printed (``output``: its
    stdout, or its lines). No such line fails the test, showing the tail of ``output`` and of each
    ``context`` text (the probe's stderr, the nodes' logs)."""
    lines = output.splitlines() if isinstance(output, str) else list(output)
    results = [line for line in lines if line.startswith(RESULT)]
    if not results:
        pytest.fail("no RESULT line:\n" + "\n".join(text[-3000:] for text in ("\n".join(lines), *context)))
    return json.loads(results[-1][len(RESULT):])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained SIM_LIKE checkpoint with the shipped model's skills (motions, heights, intent
    head: what the affordance policy reads)."""
    import yaml

    from vla_align_ros.config import ModelConfig
    from vla_align_ros.model import TrimodalModel, save_checkpoint
    from vla_align_ros.model.checkpoint import add_to_manifest
    from vla_align_ros.paths import shipped_model

    torch.manual_seed(0)
    model = TrimodalModel(ModelConfig.from_dict(yaml.safe_load(SIM_LIKE))).eval()
    out = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    save_checkpoint(model, out)
    shutil.copy(shipped_model() / "checkpoint" / "skills.json", out / "skills.json")
    add_to_manifest(out, "skills.json")
    return out
