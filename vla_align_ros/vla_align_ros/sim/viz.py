"""Pictures of the simulator: the camera view beside the same view with the ground-truth
masks of the task's objects overlaid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .env import TabletopEnv
from .scene import OBJECTS


# A label palette that contrasts with the objects' own colours.
PALETTE = np.array([[255, 0, 255], [0, 255, 255], [255, 128, 0], [128, 0, 255],
                    [255, 255, 255], [0, 0, 0], [255, 0, 128], [0, 128, 255]], dtype=np.float32)


def overlay_labels(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Tint each labelled object with a label colour and outline it in white."""
    import cv2

    out = rgb.astype(np.float32).copy()
    for i, obj in enumerate(OBJECTS):
        m = labels == i + 1
        if not m.any():
            continue
        tint = PALETTE[i % len(PALETTE)]
        out[m] = (1 - alpha) * out[m] + alpha * tint
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out.clip(0, 255).astype(np.uint8)


def save_camera_figure(path: str | Path, seed: int = 3, family: str = "place", size: int = 256) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with TabletopEnv(image_size=(size, size), visual="full") as env:
        task = env.reset(seed=seed, family=family)
        frame = env.render(segmentation=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    axes[0].imshow(frame.rgb)
    axes[0].set_title("front camera (rgb8)")
    axes[1].imshow(overlay_labels(frame.rgb, frame.labels))
    axes[1].set_title("ground-truth segmentation (one colour per object)")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f'task: "{task.instruction}"')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return task.instruction


def save_randomisation_figure(path: str | Path, seed: int = 3, family: str = "place", size: int = 256,
                              appearance_seed: int = 1) -> None:
    """One scene (``seed``) seen plain, under a 'train' and under an 'unseen' randomisation draw
    (both from ``appearance_seed``), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .randomisation import no_randomisation, randomisation_rng, sample_randomisation

    panels = []
    with TabletopEnv(image_size=(size, size), visual="full") as env:
        task = env.reset(seed=seed, family=family)
        for profile in ("none", "train", "unseen"):
            r = sample_randomisation(profile, randomisation_rng(appearance_seed), len(OBJECTS))
            env.set_appearance(r)
            panels.append((profile, r, env.render(segmentation=False).rgb))
        env.set_appearance(no_randomisation(len(OBJECTS)))
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 5.0))
    for ax, (profile, r, rgb) in zip(axes, panels):
        ax.imshow(rgb)
        ax.axis("off")
        detail = "" if profile == "none" else (
            f"\ncamera {100 * np.linalg.norm(r.cam_shift):.1f} cm, {np.degrees(np.linalg.norm(r.cam_rotvec)):.1f} deg;"
            f" light warmth {r.light_warmth:+.2f}, tilt {np.degrees(r.light_polar):.0f} deg")
        ax.set_title(f"{profile}{detail}", fontsize=10)
    fig.suptitle(f'domain randomisation, one scene (seed {seed}): "{task.instruction}"')
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.94))
    fig.savefig(path, dpi=100)
    plt.close(fig)
