"""Where the model says to act, scored against the simulator's ground truth: the pick map's peak
on the step's object, the place map's peak on its target, the published mask's IoU (the region
grown from the peak, ``mask_from_peak``, as the nodes publish it; and the map's own ``logits > 0``),
and a push's start. The frames scored are those the demonstration's own keyframes label (before the
grasp for a pick, before the release for a place); the ground truth is the object's and the
target's mask on the step's first frame (neither has moved yet, and nothing held hides them).
Evaluation only: this reads ``/ground_truth/*``."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..data.bags import Episode
from ..data.keyframes import LabelError, align_to_text_steps, label_episode
from ..data.pseudo_masks import mask_from_peak
from ..metrics import mask_iou
from ..model.trimodal import TrimodalModel
from ..text_input import resolve_references


def _frames(ep: Episode, labels, names: Sequence[str]) -> list[tuple[int, str, np.ndarray, np.ndarray | None, str, np.ndarray, np.ndarray]]:
    """(frame, step text, object mask, target mask or None, step kind, pick px, place px) of every labelled frame."""
    goals = (ep.task or {}).get("subgoals") or []
    if ep.labels is None or len(goals) != len(labels.steps):
        return []
    aligned = align_to_text_steps(labels, len(ep.steps))
    texts = resolve_references(list(ep.steps))
    out = []
    for k, st in enumerate(labels.steps):
        first = ep.labels[st.start]
        obj = first == names.index(goals[k]["obj"]) + 1
        target = first == names.index(goals[k]["target"]) + 1 if goals[k].get("target") in names else None
        for i in labels.step_frames(k):
            if np.isfinite(aligned.pick_px[i]).all() or np.isfinite(aligned.place_px[i]).all():
                out.append((i, texts[min(int(aligned.step_index[i]), len(texts) - 1)], obj, target, st.kind,
                            aligned.pick_px[i], aligned.place_px[i]))
    return out


@torch.no_grad()
def affordance_metrics(model: TrimodalModel, episodes: Sequence[Episode], names: Sequence[str], robot: Any,
                       kinematics: Any, max_frames: int = 1500, seed: int = 0, bs: int = 64) -> dict[str, Any]:
    """Pick / place accuracy, published-mask IoU and push-start error over ``episodes`` (which
    must carry the simulator's segmentation and task)."""
    rows: list[tuple[Episode, tuple]] = []
    unlabelled = 0
    for ep in episodes:
        try:
            labels = label_episode(ep, robot, kinematics)
        except LabelError:
            unlabelled += 1
            continue
        rows += [(ep, r) for r in _frames(ep, labels, names)]
    if not rows:
        return {"frames": 0, "unlabelled_episodes": unlabelled}
    rng = np.random.default_rng(seed)
    if len(rows) > max_frames:
        rows = [rows[i] for i in sorted(rng.choice(len(rows), max_frames, replace=False))]
    model.eval()
    pick_hits, place_hits, ious, raw_ious, push_err, chance = [], [], [], [], [], []
    for a in range(0, len(rows), bs):
        chunk = rows[a:a + bs]
        images = torch.from_numpy(np.stack([ep.images[r[0]] for ep, r in chunk]))
        tok = model.tokenize([r[1] for _, r in chunk])
        vis = model.encode_image(images)
        txt = model.encode_text(tok["input_ids"], tok["attention_mask"])
        hw = tuple(images.shape[1:3])
        pick_logits = model.ground(vis, txt, hw, role=0).mask_logits  # (b, H, W)
        place_logits = model.ground(vis, txt, hw, role=1).mask_logits if model.cfg.heads.role_pool else None
        for j, (ep, (frame, _, obj, target, kind, pick_px, place_px)) in enumerate(chunk):
            peak = np.unravel_index(int(pick_logits[j].argmax()), hw)
            if np.isfinite(pick_px).all():
                if kind == "push":
                    push_err.append(float(np.hypot(peak[0] - pick_px[0], peak[1] - pick_px[1])))
                else:
                    pick_hits.append(bool(obj[peak]))
                    chance.append(float(obj.mean()))  # a pixel drawn at random lands on the object
                    published = mask_from_peak(ep.images[frame], pick_logits[j].numpy())
                    ious.append(float(mask_iou(torch.from_numpy(published)[None], torch.from_numpy(obj)[None])[0]))
                    raw_ious.append(float(mask_iou((pick_logits[j] > 0)[None], torch.from_numpy(obj)[None])[0]))
            if place_logits is not None and target is not None and np.isfinite(place_px).all():
                place_hits.append(bool(target[np.unravel_index(int(place_logits[j].argmax()), hw)]))

    def mean(v: list) -> float | None:
        return round(float(np.mean(v)), 3) if v else None

    return {"frames": len(rows), "unlabelled_episodes": unlabelled, "pick_accuracy": mean(pick_hits),
            "pick_frames": len(pick_hits), "pick_chance": mean(chance), "place_accuracy": mean(place_hits), "place_frames": len(place_hits),
            "mask_iou": mean(ious), "map_mask_iou": mean(raw_ious), "push_start_error_px": mean(push_err), "push_frames": len(push_err)}
