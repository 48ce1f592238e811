"""A procedural compositional data set: coloured shapes on a table, a gripper mid-task, an
instruction from templates with synonyms, and the action chunk that carries the task out.

It exists to prove, fast and without a simulator, that the trimodal model learns and that it
generalises to compositions it never saw (e.g. "red ball" when training only had red cubes,
red triangles and balls of other colours). What the three modalities share:

* the image shows the target object with the gripper on it (pick: centred on it, the object
  lifted with a shadow; push left: the gripper at its right side; push right: at its left);
* the instruction names the verb, the colour and the shape (several phrasings per verb/noun);
* the action chunk (H x [dx, dy, dz, grip]) depends on the verb and on the shape (grasp width
  and push height differ per shape); the robot state is the gripper pose and opening.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import cv2
import numpy as np
import torch
from torch import Tensor

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 40), "green": (45, 170, 70), "blue": (45, 85, 215), "yellow": (225, 205, 45),
}
SHAPES: tuple[str, ...] = ("cube", "ball", "triangle")
VERBS: tuple[str, ...] = ("pick", "push_left", "push_right")
SHAPE_WORDS: dict[str, tuple[str, ...]] = {"cube": ("cube", "block"), "ball": ("ball", "sphere"),
                                           "triangle": ("triangle", "wedge")}
TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick": ("pick up the {c} {s}", "grab the {c} {s}", "lift the {c} {s}"),
    "push_left": ("push the {c} {s} to the left", "slide the {c} {s} left", "nudge the {c} {s} leftwards"),
    "push_right": ("push the {c} {s} to the right", "slide the {c} {s} right", "nudge the {c} {s} rightwards"),
}
GRASP_WIDTH = {"cube": 0.5, "ball": 0.3, "triangle": 0.7}
PUSH_HEIGHT = {"cube": 0.5, "ball": 0.3, "triangle": 0.2}
# Held out by default: three verb-colour compositions ("push ... blue ... left" and so on) with
# every shape. Training still sees every verb, every colour and every colour-shape object,
# just never these verbs with these colours.
DEFAULT_HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("push_left", "blue", "*"), ("push_right", "red", "*"), ("pick", "green", "*"))
Composition = tuple[str, str, str]  # (verb, colour, shape)


def all_compositions() -> list[Composition]:
    return list(product(VERBS, COLORS, SHAPES))


def matches(comp: Composition, pattern: tuple[str, str, str]) -> bool:
    """``pattern`` fields equal to ``*`` match anything."""
    return all(p == "*" or p == c for c, p in zip(comp, pattern))


def instruction_id(verb: str, color: str, shape: str) -> int:
    """Canonical id of an instruction: synonyms share it."""
    return (VERBS.index(verb) * len(COLORS) + list(COLORS).index(color)) * len(SHAPES) + SHAPES.index(shape)


@dataclass
class SyntheticSet:
    images: Tensor  # (N, S, S, 3) uint8
    texts: list[str]
    ids: Tensor  # (N,) canonical instruction ids
    actions: Tensor  # (N, H, 4) float32
    state: Tensor  # (N, 4) float32
    masks: Tensor  # (N, S, S) bool, the target object's pixels
    compositions: list[tuple[str, str, str]]  # (verb, colour, shape) per sample

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Tensor) -> "SyntheticSet":
        sel = idx.tolist()
        return SyntheticSet(self.images[idx], [self.texts[i] for i in sel], self.ids[idx], self.actions[idx],
                            self.state[idx], self.masks[idx], [self.compositions[i] for i in sel])


def _draw_shape(img: np.ndarray, mask: np.ndarray | None, shape: str, cx: int, cy: int, r: int,
                color: tuple[int, int, int]) -> None:
    targets = [img] if mask is None else [img, mask]
    for canvas in targets:
        col = color if canvas is img else 1
        if shape == "cube":
            cv2.rectangle(canvas, (cx - r, cy - r), (cx + r, cy + r), col, thickness=-1)
        elif shape == "ball":
            cv2.circle(canvas, (cx, cy), r, col, thickness=-1)
        else:
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
            cv2.fillPoly(canvas, [pts], col)


def _draw_gripper(img: np.ndarray, gx: int, gy: int, vertical: bool) -> None:
    dark = (35, 35, 35)
    if vertical:  # a parallel gripper seen from above, fingers left and right of the object
        cv2.rectangle(img, (gx - 9, gy - 6), (gx - 7, gy + 6), dark, -1)
        cv2.rectangle(img, (gx + 7, gy - 6), (gx + 9, gy + 6), dark, -1)
        cv2.rectangle(img, (gx - 9, gy - 9), (gx + 9, gy - 7), dark, -1)
    else:  # a pusher paddle beside the object
        cv2.rectangle(img, (gx - 2, gy - 8), (gx + 2, gy + 8), dark, -1)


def _action_chunk(verb: str, shape: str, horizon: int, rng: np.random.Generator) -> np.ndarray:
    a = np.zeros((horizon, 4), dtype=np.float32)  # dx, dy, dz, grip
    if verb == "pick":
        a[:2, 2] = -0.5
        a[4:, 2] = 0.5
        a[:, 3] = 1.0
        a[2:, 3] = GRASP_WIDTH[shape]
    else:
        a[0, 2] = -PUSH_HEIGHT[shape]
        a[1:, 0] = -0.4 if verb == "push_left" else 0.4
        a[:, 3] = 0.0
    return a + rng.normal(0.0, 0.02, a.shape).astype(np.float32)


def _place(rng: np.random.Generator, n_objects: int, s: int, r: int) -> list[tuple[int, int]]:
    """Rejection-sample object centres that keep objects (and the gripper beside them) apart;
    start over when a layout paints itself into a corner."""
    for _ in range(1000):
        centres: list[tuple[int, int]] = []
        for _ in range(50):
            c = (int(rng.integers(r + 10, s - r - 10)), int(rng.integers(r + 6, s - r - 4)))
            if all(abs(c[0] - o[0]) > 2 * r + 9 or abs(c[1] - o[1]) > 2 * r + 4 for o in centres):
                centres.append(c)
                if len(centres) == n_objects:
                    return centres
    raise ValueError(f"cannot place {n_objects} objects of radius {r} in a {s} px image")


def make_synthetic_set(n: int, seed: int, compositions: list[Composition] | None = None,
                       image_size: int = 64, horizon: int = 8, n_objects: int = 3) -> SyntheticSet:
    """n samples whose (verb, colour, shape) is drawn uniformly from ``compositions`` (default:
    all 36). Distractors are any other colour-shape pair. Deterministic per seed."""
    rng = np.random.default_rng(seed)
    comps_allowed = compositions or all_compositions()
    all_pairs = list(product(COLORS, SHAPES))
    s = image_size
    r = max(3, s // 9)
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    masks = np.zeros((n, s, s), dtype=np.uint8)
    actions = np.empty((n, horizon, 4), dtype=np.float32)
    state = np.empty((n, 4), dtype=np.float32)
    texts, ids, comps = [], [], []
    for i in range(n):
        verb, color, shape = comps_allowed[rng.integers(len(comps_allowed))]
        others = [p for p in all_pairs if p != (color, shape)]
        chosen = [(color, shape)] + [others[j] for j in rng.choice(len(others), n_objects - 1, replace=False)]
        # Non-overlapping centres, away from the border (room for the gripper).
        centres = _place(rng, n_objects, s, r)
        img = np.empty((s, s, 3), dtype=np.uint8)
        img[:] = (150, 112, 75)
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, (s, s, 1)), 0, 255).astype(np.uint8)
        for k in range(n_objects - 1, -1, -1):
            (oc, osh), (cx, cy) = chosen[k], centres[k]
            jitter = rng.integers(-20, 21, 3)
            col = tuple(int(v) for v in np.clip(np.array(COLORS[oc]) + jitter, 0, 255))
            if k == 0 and verb == "pick":  # lifted: shadow below, object raised
                _draw_shape(img, None, osh, cx + 2, cy + 3, r, (90, 70, 50))
            _draw_shape(img, masks[i] if k == 0 else None, osh, cx, cy, r, col)
        tx, ty = centres[0]
        if verb == "pick":
            gx, gy = tx, ty
        elif verb == "push_left":
            gx, gy = tx + r + 4, ty
        else:
            gx, gy = tx - r - 4, ty
        _draw_gripper(img, gx, gy, vertical=verb == "pick")
        images[i] = img
        actions[i] = _action_chunk(verb, shape, horizon, rng)
        state[i] = (gx / s, gy / s, 1.0, 1.0 if verb == "pick" else 0.0)
        tmpl = TEMPLATES[verb][rng.integers(len(TEMPLATES[verb]))]
        word = SHAPE_WORDS[shape][rng.integers(len(SHAPE_WORDS[shape]))]
        texts.append(tmpl.format(c=color, s=word))
        ids.append(instruction_id(verb, color, shape))
        comps.append((verb, color, shape))
    return SyntheticSet(images=torch.from_numpy(images), texts=texts, ids=torch.tensor(ids),
                        actions=torch.from_numpy(actions), state=torch.from_numpy(state),
                        masks=torch.from_numpy(masks.astype(bool)), compositions=comps)


def compositional_split(n_train: int, n_test: int, seed: int,
                        held_out: tuple[tuple[str, str, str], ...] = DEFAULT_HELD_OUT,
                        image_size: int = 64, horizon: int = 8) -> tuple[SyntheticSet, SyntheticSet]:
    """Train on every (verb, colour, shape) that matches no ``held_out`` pattern; test only on
    those that do. Patterns use ``*`` as a wildcard."""
    comps = all_compositions()
    for pattern in held_out:
        if len(pattern) != 3 or not any(matches(c, pattern) for c in comps):
            raise ValueError(f"held_out pattern {pattern!r} matches no (verb, colour, shape) composition")
    test_comps = [c for c in comps if any(matches(c, p) for p in held_out)]
    train_comps = [c for c in comps if c not in test_comps]
    if not train_comps:
        raise ValueError(f"held_out {held_out!r} leaves nothing to train on")
    train = make_synthetic_set(n_train, seed, train_comps, image_size, horizon)
    test = make_synthetic_set(n_test, seed + 1, test_comps, image_size, horizon)
    return train, test
