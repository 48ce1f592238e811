"""PNG plots of the evaluation report (matplotlib, Agg backend)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.bag_dataset import BagSamples
from ..metrics.retrieval import recall_curve

PAIRS = (("vision", "text"), ("vision", "action"), ("text", "action"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each step (fewer at the start), same length as ``values``."""
    c = np.cumsum(np.concatenate([[0.0], values]))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def write_plots(out: Path, log: list[dict], samples: dict[str, BagSamples], fwd: dict[str, Any]) -> list[str]:
    plt = _plt()
    written: list[str] = []
    main = "held_out" if "held_out" in samples else "seen"

    if log:
        fig, ax = plt.subplots(figsize=(8, 4))
        steps = np.array([r["step"] for r in log])
        window = max(1, len(log) // 60)
        for i, k in enumerate(("total", "contrastive", "spatial", "phrase", "target", "temporal", "segments", "policy",
                               "geometry")):
            values = np.array([r.get(k, 0.0) for r in log], dtype=float)
            if not (values > 0).any():  # a term that is off (or absent) has no place on a log axis
                continue
            colour = f"C{i}"
            ax.plot(steps, values, color=colour, lw=0.6, alpha=0.2)
            ax.plot(steps, running_mean(values, window), color=colour, lw=1.5, label=k)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"training curves (faint: every step; solid: mean of {window} steps)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=100)
        plt.close(fig)
        written.append("training_curves.png")

    s, f = samples[main], fwd[main]
    order = torch.argsort(s.ids, stable=True)
    pick = order[torch.linspace(0, len(order) - 1, min(48, len(order))).long()]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (a, b) in zip(axes, PAIRS):
        sim = (f[a][pick] @ f[b][pick].T).numpy()
        im = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
        ax.set_title(f"{a} x {b}", fontsize=10)
        ax.set_xlabel(b)
        ax.set_ylabel(a)
    fig.suptitle(f"cosine similarity, {len(pick)} {main} frames sorted by task")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(out / "similarity_matrices.png", dpi=100)
    plt.close(fig)
    written.append("similarity_matrices.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = np.arange(1, 21)
    for name, style in (("held_out", "-"), ("seen", "--")):
        if name not in samples:
            continue
        for (a, b), color in zip(PAIRS, ("tab:blue", "tab:orange", "tab:green")):
            for q, g, marker in ((a, b, "o"), (b, a, "s")):
                recall = recall_curve(fwd[name][q], fwd[name][g], samples[name].ids, samples[name].ids, ks.tolist())
                ax.plot(ks, recall, style, color=color, marker=marker, ms=3, lw=1,
                        label=f"{q}->{g} ({name})")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K")
    ax.set_ylim(0, 1.02)
    ax.set_title("retrieval recall against K")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=100)
    plt.close(fig)
    written.append("recall_at_k.png")

    z = torch.cat([f["vision"], f["text"], f["action"]]).float()
    z = z - z.mean(0)
    _, _, v = torch.pca_lowrank(z, q=2, center=False)
    p = (z @ v[:, :2]).numpy()
    n = len(f["vision"])
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, (name, color) in enumerate((("vision", "tab:blue"), ("text", "tab:orange"), ("action", "tab:green"))):
        ax.scatter(p[i * n : (i + 1) * n, 0], p[i * n : (i + 1) * n, 1], s=5, alpha=0.5, color=color, label=name)
    ax.set_title("embeddings, 2-D PCA (the modality gap)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "embedding_pca.png", dpi=100)
    plt.close(fig)
    written.append("embedding_pca.png")

    with_mask = s.has_mask.nonzero().flatten()
    if len(with_mask):
        chosen = with_mask[torch.linspace(0, len(with_mask) - 1, min(6, len(with_mask))).long()]
        fig, axes = plt.subplots(2, len(chosen), figsize=(2.4 * len(chosen), 5.2), squeeze=False)
        for j, i in enumerate(chosen.tolist()):
            img = s.images[i].numpy()
            axes[0, j].imshow(img)
            axes[0, j].contour(s.masks[i].numpy(), levels=[0.5], colors="white", linewidths=1)
            axes[0, j].set_title("true mask", fontsize=8)
            axes[1, j].imshow(img)
            axes[1, j].imshow(np.ma.masked_where(f["mask_logits"][i].numpy() <= 0, np.ones(img.shape[:2])),
                              cmap="autumn", alpha=0.55)
            axes[1, j].set_title("predicted", fontsize=8)
            axes[0, j].set_xlabel(s.texts[i][:32], fontsize=6)
            for ax in axes[:, j]:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"spatial grounding on {main} frames")
        fig.tight_layout()
        fig.savefig(out / "mask_overlays.png", dpi=100)
        plt.close(fig)
        written.append("mask_overlays.png")

    role_split = next((n for n in (main, "seen") if n in samples and "target_logits" in fwd[n]
                       and samples[n].has_target is not None and bool(samples[n].has_target.any())), None)
    if role_split is not None:
        written.append(_role_plot(out, samples[role_split], fwd[role_split], role_split))

    def multi_step(sm: BagSamples) -> list[int]:
        return [e for e in sm.episode.unique().tolist() if len(sm.step_texts[int((sm.episode == e).nonzero()[0])]) > 1]

    timeline_split = next((n for n in ("held_out", "seen") if n in samples and multi_step(samples[n])), None)
    if timeline_split is not None:
        s, f = samples[timeline_split], fwd[timeline_split]
        multi = multi_step(s)[:3]
        fig, axes = plt.subplots(len(multi), 1, figsize=(8, 1.8 * len(multi)), squeeze=False)
        for ax, e in zip(axes[:, 0], multi):
            sel = (s.episode == e).nonzero().flatten()
            t = s.time_in_episode[sel].numpy()
            ax.step(t, s.step_index[sel].numpy(), where="post", label="true step", lw=2)
            order = np.argsort(t)
            ax.step(t[order], f["step_pred"][sel].numpy()[order] + 0.05, where="post", label="online (per frame)", lw=1.2)
            for k, (a, b) in enumerate(f["segments"].get(e, torch.empty(0, 2)).tolist()):
                ax.plot([a, b], [k - 0.12, k - 0.12], lw=4, alpha=0.6, color="tab:green",
                        label="localised segment" if k == 0 else None)
            ax.set_yticks(range(len(s.step_texts[int(sel[0])])))
            ax.set_ylabel("step")
            ax.set_title(f"{timeline_split}: {s.texts[int(sel[0])][:80]}", fontsize=8)
        axes[-1, 0].set_xlabel("seconds since the instruction")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "temporal_timeline.png", dpi=100)
        plt.close(fig)
        written.append("temporal_timeline.png")
    return written


def _role_plot(out: Path, s: BagSamples, f: dict, split: str) -> str:
    """The instruction's two roles on frames that have a place: the object's mask (red) and the
    place's (cyan), their centres as the policy reads them (x) and the true ones (o)."""
    from ..model.heads import mask_keypoints, true_keypoints

    plt = _plt()
    with_target = s.has_target.nonzero().flatten()
    chosen = with_target[torch.linspace(0, len(with_target) - 1, min(8, len(with_target))).long()]
    pred = mask_keypoints(torch.stack([f["mask_logits"][chosen], f["target_logits"][chosen]], dim=1))  # (n, 2, 3)
    true = true_keypoints(torch.stack([s.masks[chosen], s.target_masks[chosen]], dim=1))
    h, w = s.masks.shape[-2:]

    def px(xy: torch.Tensor) -> tuple[float, float]:
        return float((xy[0] + 1) / 2 * w - 0.5), float((xy[1] + 1) / 2 * h - 0.5)

    fig, axes = plt.subplots(2, (len(chosen) + 1) // 2, figsize=(2.4 * ((len(chosen) + 1) // 2), 5.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, j, i in zip(axes.flat, range(len(chosen)), chosen.tolist()):
        ax.imshow(s.images[i].numpy())
        for role, (logits, colour) in enumerate(((f["mask_logits"][i], "red"), (f["target_logits"][i], "cyan"))):
            ax.contour(logits.numpy(), levels=[0.0], colors=colour, linewidths=1)
            if (s.masks if role == 0 else s.target_masks)[i].any():
                ax.plot(*px(true[j, role]), "o", mfc="none", mec=colour, ms=7, mew=1.5)
            ax.plot(*px(pred[j, role]), "x", color=colour, ms=7, mew=1.5)
        ax.set_title("\n".join(textwrap.wrap(s.texts[i], 36)[:3]), fontsize=6)
    fig.suptitle(f"{split}: the object (red) and the place (cyan); x = the policy's keypoint, o = the truth",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "role_keypoints.png", dpi=100)
    plt.close(fig)
    return "role_keypoints.png"
