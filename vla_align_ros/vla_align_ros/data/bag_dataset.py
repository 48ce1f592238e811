"""Episodes -> training samples, and splits that hold out whole compositions and episodes."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..text_input import resolve_references
from .bags import Episode, action_chunks
from .keyframes import DemoLabels, align_to_text_steps
from .pseudo_masks import grow_region
from .gripper_events import gripper_events, gripper_opening


@dataclass
class BagSamples:
    """One sample per synchronised frame. Tensors are stacked over all frames."""

    images: Tensor  # (N, H, W, 3) uint8
    texts: list[str]  # instruction per sample
    ids: Tensor  # (N,) composition id: the same task (whatever the phrasing) shares an id
    motion_ids: Tensor  # (N,) what the arm's motion alone tells apart (see ``motion_key``)
    actions: Tensor  # (N, H, A) action chunks
    state: Tensor  # (N, S) joint positions (then their velocities: (N, 2S) with action.velocity)
    masks: Tensor  # (N, H, W) bool, the object of the active step (all False when unknown)
    has_mask: Tensor  # (N,) bool
    step_index: Tensor  # (N,) active step
    step_texts: list[list[str]]  # steps of each sample's instruction
    progress: Tensor  # (N,) progress within the active step in [0, 1]
    episode: Tensor  # (N,) episode index
    time_in_episode: Tensor  # (N,) seconds since the instruction
    # One object in view per frame, named on its own ("the red block"), and its mask: teaches the
    # spatial head every object's name, whatever role it plays in the instructions (the rules
    # policy asks for the object to move and the place to put it). "" when the bag has no masks.
    phrase_texts: list[str] = field(default_factory=list)
    phrase_masks: Tensor | None = None  # (N, H, W) bool
    phrase_objects: Tensor | None = None  # (N,) long: the named object's index in the label order, -1 none
    # Where the active step puts its object (the plate or cube under "on the ..."), for the
    # spatial head's second role; all False for a pick, a push, or a bag without the task.
    target_masks: Tensor | None = None  # (N, H, W) bool
    has_target: Tensor | None = None  # (N,) bool
    # Grasps and releases of the gripper since the instruction, up to this frame (gripper_events).
    events: Tensor | None = None  # (N, 2) float
    # Keyframe labels (data.keyframes): where the active step's hand acts, [row, col]; NaN where none.
    pick_px: Tensor | None = None  # (N, 2) float
    place_px: Tensor | None = None  # (N, 2) float

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def has_phrase(self) -> Tensor:
        """(N,) bool: the frame names an object on its own (``phrase_texts``); built once, the
        trainer indexes it every step."""
        return torch.tensor([bool(t) for t in self.phrase_texts], dtype=torch.bool)

    def episode_frames(self) -> dict[int, Tensor]:
        """{episode: indices of its frames in time order}."""
        out = {}
        for e in self.episode.unique().tolist():
            sel = (self.episode == e).nonzero().flatten()
            out[e] = sel[self.time_in_episode[sel].argsort()]
        return out

    def subset(self, idx: Tensor) -> "BagSamples":
        sel = idx.tolist()
        return BagSamples(self.images[idx], [self.texts[i] for i in sel], self.ids[idx], self.motion_ids[idx],
                          self.actions[idx],
                          self.state[idx], self.masks[idx], self.has_mask[idx], self.step_index[idx],
                          [self.step_texts[i] for i in sel], self.progress[idx], self.episode[idx],
                          self.time_in_episode[idx], [self.phrase_texts[i] for i in sel] if self.phrase_texts else [],
                          None if self.phrase_masks is None else self.phrase_masks[idx],
                          None if self.phrase_objects is None else self.phrase_objects[idx],
                          None if self.target_masks is None else self.target_masks[idx],
                          None if self.has_target is None else self.has_target[idx],
                          None if self.events is None else self.events[idx],
                          None if self.pick_px is None else self.pick_px[idx],
                          None if self.place_px is None else self.place_px[idx])


def composition_key(ep: Episode) -> str:
    """What the task is, independent of its phrasing: its subgoals when the bag carries the task
    (so "put X on Y" and "pick up X, then put it on Y" are one task: the same motion in the same
    scene), otherwise the instruction text itself."""
    if ep.task and ep.task.get("subgoals"):
        return json.dumps(ep.task["subgoals"], sort_keys=True)
    return ep.instruction.strip().lower()


def demo_motion_key(labels: DemoLabels) -> str:
    """What the arm's motion shows, read from the demonstration's own keyframes: each step's
    kind and a push's main direction in the base frame."""
    parts = []
    for st in labels.steps:
        if st.kind == "push" and st.place_xyz is not None:
            d = st.place_xyz[:2] - st.pick_xyz[:2]
            axis = int(np.argmax(np.abs(d)))
            parts.append(f"push_{'xy'[axis]}{'+' if d[axis] > 0 else '-'}")
        else:
            parts.append(st.kind)
    return "|".join(parts)


def motion_key(ep: Episode) -> str:
    """What the arm's motion alone can tell apart: the kind of each subgoal, a push's direction,
    and whether a place ends on a cube or on a plate; not which colours (object positions are
    random, so a trajectory says nothing about them). Without the task: the instruction."""
    if not ep.task or not ep.task.get("subgoals"):
        return composition_key(ep)
    parts = []
    for g in ep.task["subgoals"]:
        if g.get("kind") == "push":
            parts.append("push_right" if float(g.get("direction", 0.0)) > 0 else "push_left")
        elif g.get("kind") == "place":
            parts.append("place_on_" + str(g.get("target", "")).rsplit("_", 1)[-1])
        else:
            parts.append(str(g.get("kind")))
    return "|".join(parts)


def _step_object(ep: Episode, step: int, key: str = "obj") -> str | None:
    """The active step's object (``key="obj"``) or the place it goes (``"target"``; None for a
    pick or a push), from the task the bag carries."""
    if not ep.task or not ep.task.get("subgoals"):
        return None
    goals = ep.task["subgoals"]
    return goals[min(step, len(goals) - 1)].get(key) or None


def object_name_phrase(name: str, rng: np.random.Generator | None = None) -> str:
    """"red_cube" -> "the red cube" (or a synonym of the noun: "the red block"); other label
    names are read with underscores as spaces."""
    from ..sim.tasks import NOUNS

    words = name.split("_")
    if len(words) == 2 and words[1] in NOUNS:
        nouns = NOUNS[words[1]]
        words[1] = nouns[int(rng.integers(len(nouns)))] if rng is not None else nouns[0]
    return "the " + " ".join(words)


MIN_PHRASE_PIXELS = 4  # an object this small in the frame is not named on its own


def _phrase_targets(ep: Episode, object_names: Sequence[str], seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One visible object per frame (drawn with a per-episode seed): its phrase, its mask and its
    index in ``object_names`` (-1 where no object is in view)."""
    rng = np.random.default_rng(seed)
    t = len(ep)
    texts, masks = [""] * t, np.zeros(ep.labels.shape, dtype=bool)
    objects = np.full(t, -1, dtype=np.int64)
    for i in range(t):
        counts = np.bincount(ep.labels[i].ravel(), minlength=len(object_names) + 1)[1: len(object_names) + 1]
        seen = np.flatnonzero(counts >= MIN_PHRASE_PIXELS)
        if seen.size:
            j = int(seen[rng.integers(seen.size)])
            texts[i] = object_name_phrase(object_names[j], rng)
            masks[i] = ep.labels[i] == j + 1
            objects[i] = j
    return texts, masks, objects


def demo_masks(ep: Episode, labels: DemoLabels) -> tuple[np.ndarray, np.ndarray]:
    """Self-supervised masks of each frame's object (grown from its pick pixel) and of where it
    goes (from its place pixel), on the first frame of each step, where nothing has moved yet;
    a frame carries its step's masks while its pixel label holds. -> two (T, H, W) bool."""
    t, h, w = ep.images.shape[:3]
    obj, target = np.zeros((2, t, h, w), dtype=bool)
    for k, st in enumerate(labels.steps):
        rows = np.zeros(t, dtype=bool)
        frames = labels.step_frames(k)
        rows[frames.start:frames.stop] = True
        for px, out, use in ((labels.pick_px, obj, st.kind != "push"), (labels.place_px, target, st.kind == "place")):
            valid = rows & np.isfinite(px).all(1)
            if use and valid.any():
                first = int(np.flatnonzero(valid)[0])
                out[valid] = grow_region(ep.images[st.start], px[first])
    return obj, target


def episodes_to_samples(episodes: Sequence[Episode], horizon: int, object_names: Sequence[str] | None = None,
                        gripper_dims: int = 0, velocity: bool = False,
                        demos: Sequence[DemoLabels] | None = None) -> BagSamples:
    """``object_names``: the label order of the segmentation images (label i+1 = object i);
    ``gripper_dims``: the last state entries that are the gripper's fingers (events need them);
    ``velocity``: the state is the joint positions and then their velocities (``action.velocity``);
    ``demos``: each episode's keyframe labels (``data.keyframes``). With them every label comes
    from the demonstration itself (steps, pick and place pixels, self-supervised masks) and no
    segmentation or task is read."""
    if demos is not None and len(demos) != len(episodes):
        raise ValueError(f"{len(demos)} keyframe labels for {len(episodes)} episodes")
    keys: dict[str, int] = {}
    motions: dict[str, int] = {}
    parts: dict[str, list] = {k: [] for k in ("images", "texts", "ids", "motion_ids", "actions", "state", "masks", "has_mask",
                                              "step_index", "step_texts", "progress", "episode", "time",
                                              "phrase_texts", "phrase_masks", "phrase_objects", "target_masks",
                                              "has_target", "events", "pick_px", "place_px")}
    for e_idx, ep in enumerate(episodes):
        t = len(ep)
        demo = align_to_text_steps(demos[e_idx], len(ep.steps)) if demos is not None else None
        cid = keys.setdefault(composition_key(ep), len(keys))
        chunks = action_chunks(ep.actions, horizon)
        h, w = ep.images.shape[1:3]
        masks, targets = np.zeros((2, t, h, w), dtype=bool)
        has, has_target = np.zeros((2, t), dtype=bool)
        step_index = ep.step_index
        if demo is not None:
            masks, targets = demo_masks(ep, demo)
            has, has_target = masks.any((1, 2)), targets.any((1, 2))
            step_index = demo.step_index
        elif ep.labels is not None and object_names is not None:
            for i in range(t):
                for key, m, flag in (("obj", masks, has), ("target", targets, has_target)):
                    obj = _step_object(ep, int(ep.step_index[i]), key)
                    if obj in object_names:
                        m[i] = ep.labels[i] == object_names.index(obj) + 1
                        flag[i] = m[i].any()
        progress = np.zeros(t, dtype=np.float32)
        for s in np.unique(step_index):
            where = np.flatnonzero(step_index == s)
            progress[where] = np.linspace(0.0, 1.0, len(where)) if len(where) > 1 else 1.0
        parts["images"].append(torch.from_numpy(ep.images))
        parts["texts"] += [ep.instruction] * t
        parts["ids"] += [cid] * t
        mkey = demo_motion_key(demo) if demo is not None else motion_key(ep)
        parts["motion_ids"] += [motions.setdefault(mkey, len(motions))] * t
        parts["actions"].append(torch.from_numpy(chunks))
        parts["state"].append(torch.from_numpy(np.concatenate([ep.joints, ep.velocities], 1) if velocity else ep.joints))
        parts["masks"].append(torch.from_numpy(masks))
        parts["has_mask"].append(torch.from_numpy(has))
        parts["target_masks"].append(torch.from_numpy(targets))
        parts["has_target"].append(torch.from_numpy(has_target))
        parts["step_index"].append(torch.from_numpy(step_index))
        parts["step_texts"] += [resolve_references(list(ep.steps))] * t  # as split_steps gives them online
        parts["progress"].append(torch.from_numpy(progress))
        parts["episode"] += [e_idx] * t
        parts["time"].append(torch.from_numpy((ep.stamps - ep.stamps[0]).astype(np.float64) * 1e-9))
        if demo is None and ep.labels is not None and object_names is not None:
            p_texts, p_masks, p_objects = _phrase_targets(ep, object_names, seed=e_idx)
        else:
            p_texts, p_masks, p_objects = [""] * t, np.zeros((t, h, w), dtype=bool), np.full(t, -1, dtype=np.int64)
        parts["phrase_texts"] += p_texts
        parts["phrase_masks"].append(torch.from_numpy(p_masks))
        parts["phrase_objects"].append(torch.from_numpy(p_objects))
        parts["events"].append(torch.from_numpy(gripper_events(gripper_opening(ep.joints, gripper_dims))))
        nan = np.full((t, 2), np.nan, dtype=np.float32)
        parts["pick_px"].append(torch.from_numpy(nan if demo is None else demo.pick_px.astype(np.float32)))
        parts["place_px"].append(torch.from_numpy(nan if demo is None else demo.place_px.astype(np.float32)))
    return BagSamples(
        images=torch.cat(parts["images"]), texts=parts["texts"], ids=torch.tensor(parts["ids"]),
        motion_ids=torch.tensor(parts["motion_ids"]), actions=torch.cat(parts["actions"]),
        state=torch.cat(parts["state"]), masks=torch.cat(parts["masks"]),
        has_mask=torch.cat(parts["has_mask"]), step_index=torch.cat(parts["step_index"]),
        step_texts=parts["step_texts"], progress=torch.cat(parts["progress"]), episode=torch.tensor(parts["episode"]),
        time_in_episode=torch.cat(parts["time"]).float(), phrase_texts=parts["phrase_texts"],
        phrase_masks=torch.cat(parts["phrase_masks"]), phrase_objects=torch.cat(parts["phrase_objects"]),
        target_masks=torch.cat(parts["target_masks"]), has_target=torch.cat(parts["has_target"]),
        events=torch.cat(parts["events"]) if gripper_dims > 0 else None,
        pick_px=torch.cat(parts["pick_px"]) if demos is not None else None,
        place_px=torch.cat(parts["place_px"]) if demos is not None else None)


def matches_hold_out(ep: Episode, pattern: str) -> bool:
    """``key=value`` on the task (family=stack, object=red_cube, target=yellow_plate) or
    ``instruction~REGEX`` on the instruction text."""
    return task_matches_hold_out(ep.task, ep.instruction, pattern)


def task_matches_hold_out(task: dict | None, instruction: str, pattern: str) -> bool:
    """:func:`matches_hold_out` on a task dict (``TaskSpec.as_dict()``: family, subgoals with
    obj/target) and its instruction, for callers that have no episode."""
    if "~" in pattern and pattern.split("~", 1)[0] == "instruction":
        return re.search(pattern.split("~", 1)[1], instruction, flags=re.IGNORECASE) is not None
    if "=" not in pattern:
        raise ValueError(f"hold-out pattern {pattern!r}: use key=value (family, object, target) or instruction~REGEX")
    key, value = pattern.split("=", 1)
    if key not in ("family", "object", "target"):
        raise ValueError(f"hold-out pattern {pattern!r}: key must be family, object, target or instruction")
    if not task:
        raise ValueError(f"hold-out pattern {pattern!r} reads the task the simulator records (/ground_truth/task), "
                         f"which this recording does not have; hold out by instruction~REGEX instead")
    if key == "family":
        return task.get("family") == value
    field_name = "obj" if key == "object" else "target"
    return any(g.get(field_name) == value for g in task.get("subgoals", []))


def split_episodes(episodes: Sequence[Episode], hold_out: Sequence[str] = (), val_fraction: float = 0.1,
                   seed: int = 0) -> dict[str, list[int]]:
    """-> {"train", "val_seen", "held_out"} episode indices. ``held_out``: every episode matching
    a pattern (whole compositions never trained on); ``val_seen``: a seeded fraction of the rest
    (whole episodes of seen compositions)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must be in [0, 1)")
    out: dict[str, list[int]] = {"train": [], "val_seen": [], "held_out": []}
    for i, ep in enumerate(episodes):
        if any(matches_hold_out(ep, p) for p in hold_out):
            out["held_out"].append(i)
            continue
        h = int(hashlib.sha256(f"{seed}:{ep.bag}:{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        out["val_seen" if h < val_fraction else "train"].append(i)
    return out
