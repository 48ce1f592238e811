"""The fault battery over DDS (issue items 1-4, 7, 14-17, 25): the real policy_node class in its
own process, its model made slow, silent, non-finite or failing on purpose (fault_policy_node.py),
driven and observed by battery_probe.py in another process."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import PACKAGE_DIR, probe_result
from conftest import ros_env

HERE = Path(__file__).resolve().parent
ZERO = [0.0] * 6
TIMING = ["-p", "image_max_age_s:=0.4", "-p", "command_timeout_s:=0.4", "-p", "command_deadline_s:=0.5"]


def run_scenario(ckpt: Path, scenario: str, offset: int, fault: str = "none", params: list[str] | None = None,
                 probe_args: list[str] | None = None, env_extra: dict[str, str] | None = None,
                 sample_rss: bool = False, timeout: float = 300.0) -> tuple[dict, str, int, list[int]]:
    env = ros_env(offset)
    env.update({"VLA_CHECKPOINT": str(ckpt), "VLA_FAULT": fault, "PYTHONPATH": str(PACKAGE_DIR)}, **(env_extra or {}))
    # policy chunk: every frame's chunk comes from the (perturbed) model
    node = subprocess.Popen([sys.executable, str(HERE / "fault_policy_node.py"), "--ros-args",
                             "-p", "policy:=chunk", *(params if params is not None else TIMING)],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    rss: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                text = Path(f"/proc/{node.pid}/status").read_text()
            except OSError:
                return
            rss.append(int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("VmRSS:"))))

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_rss:
        sampler.start()
    try:
        probe = subprocess.run([sys.executable, str(HERE / "battery_probe.py"), scenario, *(probe_args or [])],
                               env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        stop.set()
        node.send_signal(2)  # SIGINT: a clean shutdown
        try:
            log = node.communicate(timeout=40)[0]
        except subprocess.TimeoutExpired:
            node.kill()
            log = node.communicate()[0] + "\n[killed: no exit within 40 s of SIGINT]"
    return probe_result(probe.stdout, probe.stderr, log), log, node.returncode, rss


def test_1_model_output_stops_one_hold_then_silence_and_a_deadline_event(tiny_checkpoint):  # noqa: F811
    r, log, code, _ = run_scenario(tiny_checkpoint, "model_stops", 20, fault="hang_after:25")
    assert r["configure"] and r["activate"] and r["moving"]
    after = [(t, v) for t, v in r["twists"] if t > r["last_chunk"]]
    zeros = [t for t, v in after if v == ZERO]
    # the chunk (4 steps at 20 Hz) plays out, then exactly one hold, within the command timeout
    assert len(zeros) == 1 and after[-1][1] == ZERO, after
    assert zeros[0] - r["last_chunk"] <= 0.4 + 0.3, (zeros, r["last_chunk"])
    assert "model" in r["status_stale"] or "chunk_exhausted" in r["status_stale"] or "image_age" in r["status_stale"]
    assert "deadline passed with the arm holding" in log
    assert code == 0


@pytest.fixture(scope="module")
def long_horizon_checkpoint(tmp_path_factory) -> Path:
    """Chunks of 60 steps (3 s at 20 Hz), so a 1 s model keeps the arm moving without a gap."""
    import torch
    import yaml

    from conftest import SIM_LIKE
    from vla_align_ros.config import ModelConfig
    from vla_align_ros.model import TrimodalModel, save_checkpoint

    cfg = yaml.safe_load(SIM_LIKE)
    cfg["action"]["horizon"] = 60
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ckpt60") / "checkpoint"
    save_checkpoint(TrimodalModel(ModelConfig.from_dict(cfg)).eval(), out)
    return out


def test_3_slow_inference_does_not_delay_the_watchdog(long_horizon_checkpoint):
    """A 1 s model, a 20 Hz control timer and a 1.5 s image timeout: when the camera stops, the
    hold comes 1.5 s after the last frame, on time, although the inference thread is busy."""
    params = ["-p", "image_max_age_s:=3.0", "-p", "command_timeout_s:=1.5", "-p", "command_deadline_s:=0.5"]
    r, log, code, _ = run_scenario(long_horizon_checkpoint, "slow", 21, fault="slow:1.0", params=params)
    assert r["configure"] and r["activate"] and r["moving"]
    zeros = [t for t, v in r["twists"] if v == ZERO and t > r["t_camera_off"]]
    assert len(zeros) == 1, r["twists"][-10:]
    late = zeros[0] - r["t_camera_off"]
    assert 1.5 - 0.1 <= late <= 1.5 + 0.35, late  # the timeout plus a cycle and DDS, not plus an inference
    moving_after = [t for t, v in r["twists"] if v != ZERO and t > zeros[0]]
    assert not moving_after
    assert code == 0


def test_4_non_finite_actions_never_reach_the_arm(tiny_checkpoint):  # noqa: F811
    r, log, code, _ = run_scenario(tiny_checkpoint, "nan", 22, fault="nan")
    assert r["moving"]
    assert all(math.isfinite(x) for _, v in r["twists"] for x in v)
    s = r["status"]
    assert s["safety"]["non_finite_chunk"] >= 5 and s["safety"]["holds"] >= 1
    assert code == 0


@pytest.mark.parametrize("fault,why", [("raise_after:15", "3 model failures in a row"), ("oom_after:15", "out of memory")])
def test_17_device_errors_hold_and_deactivate_without_a_crash_loop(tiny_checkpoint, fault, why):  # noqa: F811
    r, log, code, _ = run_scenario(tiny_checkpoint, "fault", 23, fault=fault)
    assert r["moving"] and r["state_later"] == "inactive"
    # after the node went inactive: no command at all, the last one sent was a hold
    assert all(t <= r["t_inactive"] for t, _ in r["twists"]) and r["twists"][-1][1] == ZERO
    assert r["reactivate"] and r["state_after_retry"] == "inactive"  # the fault persists: off again
    assert f"deactivating: {why}" in log and code == 0
    if fault.startswith("oom"):
        assert log.count("dropped (inference_error") <= 2  # deactivated at the first OOM (one per activation)


def test_2_14_15_camera_stop_bad_stamps_and_qos_mismatch(tiny_checkpoint):  # noqa: F811
    r, log, code, _ = run_scenario(tiny_checkpoint, "inputs", 24)
    assert r["moving"]
    assert len(r["cam_zeros"]) == 1 and not r["cam_motion_after"] and "image" in r["cam_status_stale"]
    assert r["cam_resumed"]
    assert r["bad_stamp_chunks"] == []
    assert r["stamp_drops"].get("image_future", 0) >= 3 and r["stamp_drops"].get("image_too_old", 0) >= 3
    assert r["qos_drops"] >= 1 and "incompatible QoS" in log
    assert code == 0


def test_7_a_dead_estop_publisher_counts_as_a_stop(tiny_checkpoint):  # noqa: F811
    r, log, code, _ = run_scenario(tiny_checkpoint, "estop_heartbeat", 25, params=TIMING + ["-p", "estop_heartbeat_s:=0.5"])
    assert r["moving"] and len(r["zeros"]) == 1 and not r["motion_after"] and not r["motion_before_reset"]
    assert r["resumed"] and "e-stop publisher silent" in log and code == 0


def test_16_soak_scaled_bounded_latency_and_flat_memory(tiny_checkpoint):  # noqa: F811
    """640x480 at 30 Hz for 15 s (scripts/soak.py runs the full 10 minutes)."""
    r, log, code, rss = run_scenario(tiny_checkpoint, "soak", 26, probe_args=["15"], sample_rss=True)
    assert r["moving"] and r["chunks_in_soak"] >= 30
    assert r["latency_p99"] < 1.0  # newest frame wins: no backlog builds up
    drops = r["status"]["drops"]
    assert set(drops) <= {"frame_superseded"}, drops
    # RSS every 0.5 s; the last 20 samples lie inside the 15 s soak, after start-up's allocations
    # (the model, thread pools, the first 640x480 frames), which end later on a loaded machine.
    # Measured: +0.7 and +1.1 MB over those 10 s; one leaked frame per camera frame would be ~270 MB.
    steady = rss[-20:]
    assert len(rss) >= 30 and steady[-1] - steady[0] < 10_000 and max(steady) - min(steady) < 30_000, rss  # KiB
    assert code == 0


def test_25_require_security_refuses_activation_without_sros2(tiny_checkpoint):  # noqa: F811
    r, log, code, _ = run_scenario(tiny_checkpoint, "security", 27, params=TIMING + ["-p", "require_security:=true"])
    assert r["configure"] and not r["activate"] and r["twists"] == []
    assert "require_security: refusing to activate" in log and code == 0
