"""``vla-align ablate``: the default recipe and one variant per technique, trained with the same
seed, data and budget, evaluated on the held-out compositions, side by side (Markdown + JSON
table and a bar chart).

An ablation config names the base training recipe, the budget and the variants; a variant is a
nested mapping of overrides applied to the recipe (``{model: {loss: {hard_negatives: 8}}}``),
plus, optionally, ``train_bags`` of its own (domain randomisation trains on other recordings).
With ``shift_eval_bags`` every variant is also evaluated on recordings under an appearance
randomisation that no training saw."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..config import from_dict, merge_overrides
from ..metrics.retrieval import mean_r1
from ..model.checkpoint import CONFIG
from ..policies.skills import SKILLS_FILE
from .run_dir import CHECKPOINT_MANIFEST, ReportDir, RunDir
from .trainer import TrainConfig

# (column, key of the row, better when higher)
COLUMNS: list[tuple[str, str, bool]] = [
    ("R@1 mean", "r1_mean", True), ("R@1 / chance", "r1_over_chance", True), ("R@1 CSLS", "r1_csls", True),
    ("R@1 centred", "r1_centred", True),
    ("mask IoU", "mask_iou", True), ("pointing", "pointing", True),
    ("temporal IoU", "temporal_iou", True), ("action error / mean", "action_error_ratio", False),
    ("modality gap V-T", "modality_gap_vt", False), ("hubness T->V", "hubness", False),
    ("R@1 unseen rand.", "shift_r1_mean", True), ("mask IoU unseen rand.", "shift_mask_iou", True),
    ("rollout success, held-out", "closed_loop_success", True),
]
VARIANT_KEYS = ("train_bags",)  # variant entries that are not recipe overrides


@dataclass
class AblationConfig:
    base: str = "train/sim_tiny.yaml"  # a recipe under config/, or a path
    steps: int | None = None  # training budget per variant (None: the recipe's)
    train_bags: list[str] = field(default_factory=list)
    eval_bags: list[str] = field(default_factory=list)
    shift_eval_bags: list[str] = field(default_factory=list)  # under an unseen randomisation
    max_frames: int = 1500  # evaluation frames per split
    # In-process rollout episodes per variant (sim.rollout: the simulator and a policy in one
    # process, held-out compositions; the affordance policy where training wrote skills.json,
    # else the rules baseline); 0 = none.
    rollout_episodes: int = 0
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "AblationConfig":
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping")
        unknown = set(data) - {"base", "steps", "train_bags", "eval_bags", "shift_eval_bags", "max_frames",
                               "rollout_episodes", "variants"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        cfg = cls(**data)
        for name, over in cfg.variants.items():
            if not isinstance(over, dict) or not over:
                raise ValueError(f"{path}: variant {name!r} must be a non-empty mapping of overrides")
        return cfg


def variant_config(base: TrainConfig, overrides: dict[str, Any], steps: int | None) -> TrainConfig:
    d = merge_overrides(base.to_dict(), {k: v for k, v in overrides.items() if k not in VARIANT_KEYS})
    if steps is not None:
        d["steps"] = steps
        d["checkpoint_every"] = max(min(d["checkpoint_every"], steps), 1)
    return from_dict(TrainConfig, d)


def row_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """The table's figures from an evaluation's metrics (held-out split, seen when none)."""
    split = metrics.get("held_out") or metrics["seen"]
    r1 = {k: v["r1"] for k, v in split["retrieval"].items()}
    mean = mean_r1(r1)
    corrected = split.get("retrieval_corrected", {})
    return {"r1_mean": mean, "r1_over_chance": mean / max(split["chance_r1"], 1e-9),
            **{f"r1_{c}": mean_r1(corrected[c]) if c in corrected else None for c in ("csls", "centred")},
            "mask_iou": split.get("mask_iou"), "pointing": split.get("pointing_accuracy"),
            "temporal_iou": split.get("temporal_iou"),
            "action_error_ratio": split["action_error_ratio"], "modality_gap_vt": split["modality_gap"]["vision-text"],
            "hubness": split["hubness_text_to_vision"]["skewness"], "r1": r1}


def run_ablation(cfg: AblationConfig, out: Path, train_bags: Sequence[str] | None = None,
                 eval_bags: Sequence[str] | None = None, shift_eval_bags: Sequence[str] | None = None,
                 progress: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    from ..paths import config_file
    from .trainer import train

    train_bags = list(train_bags or cfg.train_bags)
    eval_bags = list(eval_bags or cfg.eval_bags)
    shift_bags = list(shift_eval_bags or cfg.shift_eval_bags)
    if not train_bags or not eval_bags:
        raise ValueError("an ablation needs training and evaluation bags (--bags, --eval-bags or the config)")
    base_path = config_file(cfg.base)
    base = TrainConfig.from_yaml(base_path)
    out.mkdir(parents=True, exist_ok=True)
    variants = {"default": {}, **cfg.variants}
    configs = {name: variant_config(base, over, cfg.steps) for name, over in variants.items()}  # all checked first
    rows: dict[str, Any] = {}
    for i, (name, tc) in enumerate(configs.items(), 1):
        run = RunDir(out / "runs" / name)
        if run.finished():
            log(f"[ablate {i}/{len(configs)}] {name}: reusing {run}")
        else:
            log(f"[ablate {i}/{len(configs)}] {name}: training {tc.steps} steps {variants[name] or '(the recipe)'}")
            train(variants[name].get("train_bags", train_bags), tc, run.path, resume=run.resume_state() is not None,
                  progress=progress)
        meta = json.loads((run.checkpoint / CONFIG).read_text()).get("metadata", {}) \
            if (run.checkpoint / CONFIG).is_file() else {}
        rows[name] = {**row_of(_evaluation(run, eval_bags, out / "reports" / name, cfg.max_frames)),
                      "overrides": variants[name], "train_s": meta.get("train_seconds"),
                      "shift_r1_mean": None, "shift_mask_iou": None, "closed_loop_success": None}
        if shift_bags:
            shifted = row_of(_evaluation(run, shift_bags, out / "reports" / f"{name}_unseen_randomisation",
                                         cfg.max_frames))
            rows[name].update(shift_r1_mean=shifted["r1_mean"], shift_mask_iou=shifted["mask_iou"])
        if cfg.rollout_episodes > 0:
            from ..sim.policy_eval import evaluate_policies

            policy = "affordance" if (run.checkpoint / SKILLS_FILE).is_file() else "rules"
            loop = evaluate_policies(run.path, [policy], out / "rollouts" / name, episodes=cfg.rollout_episodes,
                                     splits=["held_out"])
            rows[name]["closed_loop_success"] = loop["table"][policy]["held_out"]["success_rate"]
        (out / "ablation.partial.json").write_text(json.dumps(rows, indent=2))
    result = {"base": str(base_path), "steps": cfg.steps or base.steps, "train_bags": train_bags,
              "eval_bags": eval_bags, "shift_eval_bags": shift_bags, "rows": rows}
    (out / "ablation.json").write_text(json.dumps(result, indent=2))
    (out / "ablation.md").write_text(markdown(result))
    bar_chart(result, out / "ablation.png")
    return result


def _evaluation(run: RunDir, bags: Sequence[str], out: Path, max_frames: int) -> dict[str, Any]:
    """The run's evaluation on ``bags``: reused when ``out`` already holds one of the same bags,
    frame budget and checkpoint (an interrupted or extended ablation does not evaluate twice)."""
    from .report import evaluate_run

    stamp = {"bags": [str(b) for b in bags], "max_frames": max_frames,
             "checkpoint": (run.checkpoint / CHECKPOINT_MANIFEST).read_text()}
    key = out / "ablation_key.json"
    report = ReportDir(out)
    if report.metrics.is_file() and key.is_file() and json.loads(key.read_text()) == stamp:
        return report.read_metrics()
    metrics = evaluate_run(run.path, bags, out, max_frames=max_frames)
    key.write_text(json.dumps(stamp))
    return metrics


def _cell(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def shown_columns(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The columns some variant has a figure for (no closed-loop column when none ran)."""
    return [c for c in COLUMNS if any(r.get(c[1]) is not None for r in result["rows"].values())]


def markdown(result: dict[str, Any]) -> str:
    cols = shown_columns(result)
    lines = [f"Ablation of `{result['base']}`, {result['steps']} steps each, held-out compositions of "
             f"{', '.join(result['eval_bags'])}.", "",
             "| variant | " + " | ".join(c for c, _, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(r.get(k)) for _, k, _ in cols) + " |")
    lines.append("")
    lines.append("Higher is better except action error, modality gap and hubness.")
    return "\n".join(lines) + "\n"


def bar_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["rows"])
    cols = [(c, k) for c, k, _ in shown_columns(result) if k != "r1_over_chance"]
    ncol = 5
    nrow = (len(cols) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, (2.2 + 0.09 * len(names)) * nrow), squeeze=False)
    for ax, (title, key) in zip(axes.flat, cols):
        vals = [result["rows"][n][key] if result["rows"][n][key] is not None else 0.0 for n in names]
        y = range(len(names))
        ax.barh(y, vals, color=["#555555"] + ["#3b7dd8"] * (len(names) - 1))
        ax.axvline(vals[0], color="#555555", lw=0.8, ls="--")  # the default recipe
        ax.set_yticks(y, names if ax in axes[:, 0] else [""] * len(names), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.flat[len(cols):]:
        ax.axis("off")
    fig.suptitle(f"held-out compositions, {result['steps']} steps per variant (dashed: the default recipe)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
