"""RunDir: the run folder's layout in one place, and the atomic swaps of resume/ and checkpoint/."""

from __future__ import annotations

from pathlib import Path

from vla_align_ros.model.checkpoint import MANIFEST
from vla_align_ros.paths import checkpoint_dir
from vla_align_ros.training.run_dir import CHECKPOINT_MANIFEST, ReportDir, RunDir


def fill(text: str):
    def write(d: Path) -> None:
        d.mkdir(parents=True)
        (d / CHECKPOINT_MANIFEST).write_text(text)
    return write


def test_the_layout_and_a_checkpoint_folder_resolve_to_the_run(tmp_path):
    run = RunDir(tmp_path / "run")
    assert CHECKPOINT_MANIFEST == MANIFEST
    assert (run.checkpoint, run.resume, run.log, run.split, run.config) == tuple(
        tmp_path / "run" / n for n in ("checkpoint", "resume", "train_log.jsonl", "split.json", "train_config.json"))
    assert RunDir.of(run.checkpoint).path == run.checkpoint  # not a checkpoint yet: taken as a run folder
    run.replace_checkpoint(fill("{}"))
    assert run.finished() and RunDir.of(run.checkpoint).path == run.path and RunDir.of(run.path).path == run.path
    assert checkpoint_dir(str(run)) == str(run.checkpoint) == checkpoint_dir(str(run.checkpoint))
    assert ReportDir(tmp_path).metrics == tmp_path / "metrics.json" and ReportDir(tmp_path).report.name == "report.md"


def test_replacing_a_folder_leaves_only_the_new_one(tmp_path):
    run = RunDir(tmp_path)
    run.replace_checkpoint(fill("old"))
    run.replace_checkpoint(fill("new"))  # a finished run resumed to more steps
    run.replace_resume(fill("state"))
    assert (run.checkpoint / CHECKPOINT_MANIFEST).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "resume"]


def test_the_resume_state_falls_back_to_the_one_moved_aside(tmp_path):
    run = RunDir(tmp_path)
    assert run.resume_state() is None
    (tmp_path / ".resume.old123").mkdir()  # killed between the two renames
    assert run.resume_state() == tmp_path / ".resume.old123"
    run.replace_resume(fill("state"))
    assert run.resume_state() == run.resume


def test_log_split_and_config_round_trip(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_log() == []
    rows = [{"step": 0, "lr": 0.1, "total": 2.5}, {"step": 1, "lr": 0.2, "total": 1.5}]
    run.write_log(rows)
    assert run.read_log() == rows and run.log.read_text().count("\n") == 2
    run.write_split({"train": [0, 2], "held_out": [1]})
    assert run.read_split() == {"train": [0, 2], "held_out": [1]}
    run.write_config({"steps": 3, "path": tmp_path})  # non-JSON values as strings
    assert run.read_config() == {"steps": 3, "path": str(tmp_path)}
