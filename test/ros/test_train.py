"""Record -> train -> eval on a tiny configuration, and resume after a killed run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vla_align_ros.sim.record import record_episodes
from conftest import TINY, VENV_BIN



@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("bags")
    record_episodes(d / "train", episodes=6, seed=0, families=["place", "stack", "pick_then_place"],
                    image_size=(32, 32), progress=False)
    record_episodes(d / "eval", episodes=3, seed=900, families=["place", "stack", "pick_then_place"],
                    image_size=(32, 32), progress=False)
    return d


def config(tmp_path: Path, steps: int) -> Path:
    p = tmp_path / f"tiny_{steps}.yaml"
    p.write_text(TINY.replace("STEPS", str(steps)))
    return p


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "vla-align"), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_record_train_eval(bags, tmp_path):
    res = run_cli("train", "--bags", str(bags / "train"), "--config", str(config(tmp_path, 12)), "--out",
                  str(tmp_path / "run"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["finished"] and summary["split_episodes"]["held_out"] == 2 and summary["split_episodes"]["train"] == 4
    log = [json.loads(l) for l in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 12 and log[-1]["total"] < log[0]["total"]
    assert (tmp_path / "run" / "checkpoint" / "manifest.json").is_file()
    res = run_cli("eval", "--checkpoint", str(tmp_path / "run"), "--bags", str(bags / "eval"), "--out",
                  str(tmp_path / "report"), "--max-frames", "120")
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for split in ("seen", "held_out"):
        m = metrics[split]
        assert len(m["retrieval"]) == 6 and 0 < m["chance_r1"] <= 1
        assert len(m["retrieval_episode"]) == 6 and 0 < m["chance_r1_episode"] <= 1
        bound = m["r1_bound_text_action"]  # at least chance, at most certainty
        assert m["chance_r1"] - 1e-9 <= bound["text->action"] <= 1 and m["chance_r1"] - 1e-9 <= bound["action->text"] <= 1
        assert 0 <= m["mask_iou"] <= 1 and 0 <= m["pointing_accuracy"] <= 1
        assert m["action_l1_mean_baseline"] > 0
    assert 0 <= metrics["seen"]["temporal_iou"] <= 1  # pick_then_place has two steps
    assert metrics["held_out"]["temporal_iou"] is None  # stack has one: nothing to segment
    assert set(metrics["language"]["trained"]) and isinstance(metrics["language"]["pretrained_minilm"], dict)
    report = (tmp_path / "report" / "report.md").read_text()
    for png in ("training_curves.png", "similarity_matrices.png", "recall_at_k.png", "embedding_pca.png",
                "mask_overlays.png", "temporal_timeline.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000 and png in report


def test_training_curves_smooth_over_the_last_steps():
    import numpy as np

    from vla_align_ros.training.plots import running_mean

    v = np.array([4.0, 2.0, 0.0, 6.0, 1.0])
    # window 2: the first step alone, then pairs; window 1 leaves the curve as it is
    assert running_mean(v, 2).tolist() == [4.0, 3.0, 1.0, 3.0, 3.5]
    assert running_mean(v, 1).tolist() == v.tolist()
    assert running_mean(v, 10).tolist() == pytest.approx([4.0, 3.0, 2.0, 3.0, 2.6])


def test_killed_run_resumes_exactly(bags, tmp_path):
    cfg = config(tmp_path, 12)
    full = run_cli("train", "--bags", str(bags / "train"), "--config", str(cfg), "--out", str(tmp_path / "full"),
                   "--quiet")
    assert full.returncode == 0, full.stderr[-2000:]
    proc = subprocess.Popen([str(VENV_BIN / "vla-align"), "train", "--bags", str(bags / "train"), "--config", str(cfg),
                             "--out", str(tmp_path / "killed"), "--quiet"], env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "resume" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["step"] >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "checkpoint").exists()  # nothing half-trained looks finished
    step = json.loads(state.read_text())["step"]
    assert 6 <= step < 12
    again = run_cli("train", "--bags", str(bags / "train"), "--config", str(cfg), "--out", str(tmp_path / "killed"),
                    "--resume", "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    log_a = [json.loads(l)["total"] for l in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(l)["total"] for l in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()]
    assert log_b == pytest.approx(log_a, rel=1e-5)


def test_bad_bag_fails_before_anything_is_written(tmp_path):
    (tmp_path / "notabag").mkdir()
    res = run_cli("train", "--bags", str(tmp_path / "notabag"), "--config", str(config(tmp_path, 5)), "--out",
                  str(tmp_path / "run"))
    assert res.returncode == 2 and "no metadata.yaml" in res.stderr
    assert not (tmp_path / "run").exists()


def test_torchrun_two_cpu_ranks_train_like_one_process(bags, tmp_path):
    """2 gloo processes, each with half of every batch and negatives gathered from both, end
    with the weights of one process trained on the whole batches."""
    cfg = tmp_path / "ddp.yaml"
    # With the instruction's roles and the keypoint policy (teacher frames, geometry frames and
    # the phrase's alternating roles are drawn per global batch and sliced per rank).
    cfg.write_text(TINY.replace("STEPS", "3").replace('hold_out: ["family=stack"]', "hold_out: []")
                   .replace("max_steps: 3}", "max_steps: 3, fine_channels: 4, role_pool: true, policy_keypoints: true}")
                   .replace("policy: 1.0}", "policy: 1.0, target: 1.0, geometry: 1.0, geometry_batch: 32}"))
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    single = subprocess.run([str(VENV_BIN / "vla-align"), "train", "--bags", str(bags / "train"), "--config", str(cfg),
                             "--out", str(tmp_path / "one"), "--quiet"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    dual = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(VENV_BIN / "vla-align"), "train", "--bags", str(bags / "train"), "--config", str(cfg),
                           "--out", str(tmp_path / "two"), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert dual.returncode == 0, dual.stdout[-2000:] + dual.stderr[-3000:]
    log_one = [json.loads(l)["total"] for l in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    log_two = [json.loads(l)["total"] for l in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert log_two == pytest.approx(log_one, rel=1e-5)  # steps 2 and 3 already depend on the DDP updates
    a = load_file(str(tmp_path / "one" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "checkpoint" / "model.safetensors"))
    # Attention key biases get an exactly-zero gradient (softmax ignores a shared shift), so Adam
    # turns float noise into full-size steps there; they change no output and are skipped: the
    # k_proj.bias of the transformers encoders and the middle (key) third of torch's packed
    # in_proj_bias.
    def comparable(k: str, t: torch.Tensor) -> torch.Tensor:
        if k.endswith("in_proj_bias"):
            d = t.shape[0] // 3
            return torch.cat([t[:d], t[2 * d:]])
        return t

    bad = [k for k in a if not k.endswith("k_proj.bias")
           and not torch.allclose(comparable(k, a[k]), comparable(k, b[k]), rtol=1e-4, atol=1e-5)]
    assert not bad, bad[:10]


def test_item24_two_seeded_runs_give_identical_checkpoints(bags, tmp_path):
    """Battery item 24: two fresh training runs with the same seed write bit-identical weights
    (and the same loss log); another seed gives different weights, so the check can fail."""
    from vla_align_ros.model.checkpoint import sha256_file
    from vla_align_ros.training.trainer import TrainConfig, train

    cfg = TrainConfig.from_yaml(config(tmp_path, 3))
    logs = [train([bags / "train"], cfg, tmp_path / run, progress=False)["log"] for run in ("a", "b")]
    cfg.seed = 1
    train([bags / "train"], cfg, tmp_path / "c", progress=False)
    digest = {run: sha256_file(tmp_path / run / "checkpoint" / "model.safetensors") for run in "abc"}
    assert digest["a"] == digest["b"]
    assert logs[0] == logs[1] and len(logs[0]) == 3
    assert digest["c"] != digest["a"]


KILL_DURING_WRITE = r"""
import os, signal, sys
from pathlib import Path
import vla_align_ros.training.trainer as T
bag, cfg_path, run_dir, which = sys.argv[1:5]
real_save, real_replace, calls = T.save_file, T.os.replace, {"n": 0}

def dying_save(tensors, path, *a, **k):
    # the second resume state: the optimiser file is half written when the process dies
    if path.endswith("optimizer.safetensors"):
        calls["n"] += 1
        if calls["n"] == 2 and which == "write":
            Path(path).write_bytes(b"\0" * 100)
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(tensors, path, *a, **k)

def dying_replace(src, dst):
    # the second swap: killed between moving the old state aside and moving the new one in
    real_replace(src, dst)
    if which == "swap" and str(dst).rsplit("/", 1)[-1].startswith(".resume.old") and calls["n"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)

T.save_file, T.os.replace = dying_save, dying_replace
T.train([bag], T.TrainConfig.from_yaml(cfg_path), run_dir, progress=False)
"""


@pytest.mark.parametrize("which", ["write", "swap"])
def test_item20_sigkill_during_a_checkpoint_write_keeps_the_previous_state_and_resume_works(bags, tmp_path, which):
    """Item 20: SIGKILL in the middle of the second resume-state write (or between its two
    renames): the first state stays loadable, and --resume finishes with exactly the weights of an
    uninterrupted run."""
    from vla_align_ros.model.checkpoint import verify_checkpoint
    from vla_align_ros.training.run_dir import RunDir

    cfg = config(tmp_path, 9)
    full = run_cli("train", "--bags", str(bags / "train"), "--config", str(cfg), "--out", str(tmp_path / "full"),
                   "--quiet")
    assert full.returncode == 0, full.stderr[-2000:]
    run = tmp_path / "killed"
    p = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(bags / "train"), str(cfg), str(run), which],
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert not (run / "checkpoint").exists()
    d = RunDir(run).resume_state()
    assert d is not None and verify_checkpoint(d)  # the state written before the kill is whole
    assert json.loads((d / "state.json").read_text())["step"] == 3  # checkpoint_every: 3
    again = run_cli("train", "--bags", str(bags / "train"), "--config", str(cfg), "--out", str(run), "--resume",
                    "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(run / "checkpoint" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_ablation_trains_each_variant_alike_and_tabulates(bags, tmp_path):
    """vla-align ablate, small: the recipe and one variant, the same seed and budget; the table,
    JSON and chart; an override the recipe does not have is refused before anything trains."""
    cfg = config(tmp_path, 6)
    abl = tmp_path / "ablation.yaml"
    abl.write_text(f"base: {cfg}\nsteps: 6\nmax_frames: 200\nvariants:\n"
                   "  hard_negatives: {model: {loss: {hard_negatives: 4}}}\n"
                   f"  other_recording: {{train_bags: [{bags / 'eval'}]}}\n")
    res = run_cli("ablate", "--config", str(abl), "--bags", str(bags / "train"), "--eval-bags", str(bags / "eval"),
                  "--shift-eval-bags", str(bags / "eval"), "--out", str(tmp_path / "abl"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert list(table["rows"]) == ["default", "hard_negatives", "other_recording"] and table["steps"] == 6
    for row in table["rows"].values():
        assert 0 <= row["r1_mean"] <= 1 and row["action_error_ratio"] > 0 and len(row["r1"]) == 6
        assert 0 <= row["r1_csls"] <= 1 and 0 <= row["r1_centred"] <= 1 and 0 <= row["pointing"] <= 1
        # the shift evaluation here is on the same recording: the same figures
        assert row["shift_r1_mean"] == pytest.approx(row["r1_mean"]) and row["shift_mask_iou"] == pytest.approx(row["mask_iou"])
    split = json.loads((tmp_path / "abl" / "runs" / "other_recording" / "split.json").read_text())
    assert sum(map(len, split.values())) == 3  # trained on its own recording (3 episodes), not the 6 of --bags
    # run again: every variant and evaluation is reused, the table is the same
    stamp = (tmp_path / "abl" / "reports" / "default" / "metrics.json").stat().st_mtime_ns
    again = run_cli("ablate", "--config", str(abl), "--bags", str(bags / "train"), "--eval-bags", str(bags / "eval"),
                    "--shift-eval-bags", str(bags / "eval"), "--out", str(tmp_path / "abl"), "--quiet")
    assert again.returncode == 0 and again.stdout.count("reusing") == 3, again.stdout[-2000:]
    assert (tmp_path / "abl" / "reports" / "default" / "metrics.json").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "abl" / "ablation.json").read_text())["rows"] == table["rows"]
    a = load_file(str(tmp_path / "abl" / "runs" / "default" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "abl" / "runs" / "hard_negatives" / "checkpoint" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the switch changed training
    assert "| hard_negatives |" in (tmp_path / "abl" / "ablation.md").read_text()
    assert (tmp_path / "abl" / "ablation.png").stat().st_size > 10_000
    abl.write_text(f"base: {cfg}\nvariants:\n  typo: {{model: {{loss: {{hard_negativs: 4}}}}}}\n")
    bad = run_cli("ablate", "--config", str(abl), "--bags", str(bags / "train"), "--eval-bags", str(bags / "eval"),
                  "--out", str(tmp_path / "abl2"))
    assert bad.returncode == 2 and "hard_negativs" in bad.stderr and not (tmp_path / "abl2" / "runs").exists()


def test_every_alignment_technique_trains_and_the_defaults_add_nothing(bags, tmp_path):
    """All the technique switches on at once (the mechanics are in test_techniques): a short run
    is finite, every technique's term is logged and positive, the temperature follows its
    schedule; with the switches off the terms are exactly zero."""
    from vla_align_ros.config import from_dict, merge_overrides
    from vla_align_ros.model.checkpoint import load_checkpoint
    from vla_align_ros.training.trainer import TrainConfig, train

    base = TrainConfig.from_yaml(config(tmp_path, 4))
    over = {"model": {"loss": {"attribute_negatives": 3, "adaptive_temperature": 0.5, "temperature_schedule": "cosine",
                               "centre": True, "gap_penalty": 0.5}},
            "objective": {"object_level": 1.0, "patch_word": 0.5, "consistency": 0.5, "adversarial": 0.5},
            "curriculum": {"until": 0.5}, "robust": {"adv_steps": 2}}
    res = train([bags / "train"], from_dict(TrainConfig, merge_overrides(base.to_dict(), over)), tmp_path / "all",
                progress=False)
    for row in res["log"]:
        for term in ("object_level", "patch_word", "consistency", "adversarial", "contrastive"):
            assert math.isfinite(row[term]) and row[term] > 0, (term, row)
    model = load_checkpoint(tmp_path / "all" / "checkpoint")
    model.loss.set_progress(4, 4)
    assert float(model.loss.temps["vl"].scale().exp()) == pytest.approx(1 / 0.05, rel=1e-5)
    plain = train([bags / "train"], base, tmp_path / "plain", progress=False)
    for row in plain["log"]:
        assert all(row[t] == 0.0 for t in ("object_level", "patch_word", "consistency", "adversarial"))
