"""``vla-align bench --quick``: every section runs against real processes over DDS and the JSON is
complete and sane (no timing is asserted: this machine is shared; the figures go in the README)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO
from test_sim_ros import ros_env


def _finite_positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_quick_writes_complete_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    env = ros_env(130)
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run([sys.executable, "-m", "vla_align_ros.cli", "bench", "--quick", "--out", str(out)], env=env,
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

    t = r["training"]
    assert _finite_positive(t["two_tower"]["samples_per_s"]) and _finite_positive(t["trimodal"]["samples_per_s"])
    assert all(math.isfinite(t[k]["loss"]) for k in ("two_tower", "trimodal"))

    rows = r["siglip_memory"]["rows"]
    assert [row["n"] for row in rows] == [256, 1024]
    for row in rows:
        assert row["loss_abs_diff"] <= 1e-6 * max(1.0, row["n"] / 256)  # same loss, dense and chunked
        assert row["grad_abs_diff_sample"] <= 1e-6
    assert rows[-1]["chunked_peak_mib"] < rows[-1]["dense_peak_mib"]

    ing = r["ingest"]
    assert ing["messages"] > ing["frames"] > 0 and _finite_positive(ing["ingest_over_bare_rate"])
    assert r["sim"]["physics_steps_per_s_no_render"] > 0 and r["sim"]["expert_success_rate"] >= 0.5
    assert set(r["targets"]) >= {"node_over_model_p50", "ingest_over_bare_rate"}
