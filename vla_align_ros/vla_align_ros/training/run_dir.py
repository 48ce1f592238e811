"""The layout of a training run's folder, in one place (standard library only: the CLI, the ROS
trainer node, evaluation and the demos all read it)::

    RUN/
      checkpoint/          the finished model (model.checkpoint: safetensors + config + manifest,
                           and skills.json where the run learnt skills); only when training finished
      resume/              what a stopped run continues from: model + optimiser + RNG + step
      train_log.jsonl      one row per step: step, lr, every loss term, total
      split.json           the episode indices of each split
      train_config.json    the TrainConfig the run was trained with

An evaluation writes its own report folder (``ReportDir``): metrics.json, report.md and the plots.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

CHECKPOINT_MANIFEST = "manifest.json"  # model.checkpoint.MANIFEST: a checkpoint folder is complete when it has one


class RunDir:
    """A training run's folder: where each part of it is, and the atomic swaps that replace
    ``resume/`` and ``checkpoint/``."""

    CHECKPOINT = "checkpoint"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / self.CHECKPOINT
        self.resume = self.path / "resume"
        self.log = self.path / "train_log.jsonl"
        self.split = self.path / "split.json"
        self.config = self.path / "train_config.json"

    @classmethod
    def of(cls, path: str | Path) -> "RunDir":
        """A run folder, or a run's ``checkpoint/`` folder -> the run."""
        p = Path(path)
        return cls(p.parent if p.name == cls.CHECKPOINT and (p / CHECKPOINT_MANIFEST).is_file() else p)

    def __str__(self) -> str:
        return str(self.path)

    def finished(self) -> bool:
        """The run wrote its final checkpoint."""
        return (self.checkpoint / CHECKPOINT_MANIFEST).is_file()

    def resume_state(self) -> Path | None:
        """The resume state to continue from: ``resume/``, or, when a run was killed in the
        instant between the two renames of ``replace_resume``, the previous state it had just
        moved aside (``.resume.old*``). None when there is neither."""
        if self.resume.is_dir():
            return self.resume
        olds = sorted(self.path.glob(".resume.old*"), key=lambda p: p.stat().st_mtime)
        return olds[-1] if olds else None

    def replace_resume(self, write: Callable[[Path], None]) -> None:
        """``write(folder)`` fills a fresh folder, which then replaces ``resume/``."""
        self._replace(self.resume, ".resume", write)

    def replace_checkpoint(self, write: Callable[[Path], None]) -> None:
        """``write(folder)`` fills a fresh folder, which then replaces ``checkpoint/`` (an earlier
        run's, when a finished run is resumed to more steps)."""
        self._replace(self.checkpoint, ".checkpoint", write)

    def _replace(self, final: Path, stem: str, write: Callable[[Path], None]) -> None:
        """Write to a temporary folder, move the old one aside, move the new one in, delete the
        old: at every instant there is a complete folder under ``final`` or ``STEM.old*``."""
        tmp = self.path / f"{stem}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        old = self.path / f"{stem}.old{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def write_split(self, split: dict[str, list[int]]) -> None:
        self.split.write_text(json.dumps(split))

    def read_split(self) -> dict[str, list[int]]:
        return json.loads(self.split.read_text())

    def write_config(self, cfg: dict[str, Any]) -> None:
        self.config.write_text(json.dumps(cfg, indent=2, default=str))

    def read_config(self) -> dict[str, Any]:
        """The run's training config as saved (``TrainConfig.to_dict``)."""
        return json.loads(self.config.read_text())

    def write_log(self, rows: Sequence[dict[str, float]]) -> None:
        with open(self.log, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    def read_log(self) -> list[dict[str, float]]:
        """The rows of ``train_log.jsonl`` ([] when there is none)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


class ReportDir:
    """An evaluation's report folder: metrics.json, report.md and the plots (``plots.write_plots``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.metrics = self.path / "metrics.json"
        self.report = self.path / "report.md"

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics.read_text())
