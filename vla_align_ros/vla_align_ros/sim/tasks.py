"""Task families, their language (templates with synonyms) and their success checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .scene import COLORS, CUBE_HALF, PLATE_HALF_HEIGHT, PLATE_RADIUS

FAMILIES: tuple[str, ...] = ("pick", "place", "stack", "push", "pick_then_place", "place_two")
NOUNS = {"cube": ("cube", "block"), "plate": ("plate", "dish")}
NOUN_KIND = {noun: kind for kind, nouns in NOUNS.items() for noun in nouns}  # "block" -> "cube"
# An object named in an instruction: group 1 its colour, group 2 its noun ("red block").
OBJECT_MENTION = re.compile(r"\b(" + "|".join(COLORS) + r")\s+(" + "|".join(NOUN_KIND) + r")s?\b")
TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick": ("pick up the {X}", "grab the {X}", "lift the {X}"),
    "place": ("put the {X} on the {Y}", "place the {X} onto the {Y}", "set the {X} on the {Y}",
              "put down the {X} on the {Y}", "lower the {X} onto the {Y}"),
    "stack": ("stack the {X} on the {Y}", "put the {X} on top of the {Y}", "place the {X} on the {Y}"),
    "push": ("push the {X} to the {D}", "slide the {X} {D}", "shove the {X} {D}wards"),
    "pick_then_place": ("pick up the {X}, then put it on the {Y}", "after picking up the {X}, place it on the {Y}",
                        "grab the {X} and then set it on the {Y}"),
    "place_two": ("put the {X} on the {Y} and then the {Z} on the {W}",
                  "place the {X} onto the {Y}, then the {Z} onto the {W}"),
}
STEP_TEMPLATES = {
    "pick_then_place": ("pick up the {X}", "put it on the {Y}"),
    "place_two": ("put the {X} on the {Y}", "put the {Z} on the {W}"),
}


@dataclass(frozen=True)
class Subgoal:
    kind: str  # "pick" | "place" | "push"
    obj: str
    target: str = ""  # place: the object to put it on
    direction: float = 0.0  # push: +1 right (+y), -1 left (-y), as seen by the front camera


@dataclass
class TaskSpec:
    family: str
    instruction: str
    steps: list[str]
    subgoals: list[Subgoal]
    objects: list[str]  # objects on the table this episode
    start_xy: dict[str, tuple[float, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"family": self.family, "instruction": self.instruction, "steps": self.steps,
                "subgoals": [vars(s) for s in self.subgoals], "objects": self.objects,
                "start_xy": {k: list(v) for k, v in self.start_xy.items()}}


def _words(rng: np.random.Generator, name: str) -> str:
    color, kind = name.split("_")
    nouns = NOUNS[kind]
    return f"{color} {nouns[rng.integers(len(nouns))]}"


def make_task(family: str, rng: np.random.Generator, cubes: list[str], plates: list[str]) -> TaskSpec:
    """Draw a task of ``family`` over the objects present; instruction phrasing at random."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: must be one of {FAMILIES}")
    c = list(rng.permutation(cubes))
    p = list(rng.permutation(plates))
    tmpl = TEMPLATES[family][rng.integers(len(TEMPLATES[family]))]
    names = {"X": c[0], "Y": p[0], "Z": c[1], "W": p[1]}
    if family == "stack":
        names["Y"] = c[1]
    words = {k: _words(rng, v) for k, v in names.items()}
    direction = float(rng.choice([-1.0, 1.0]))
    words["D"] = "right" if direction > 0 else "left"
    instruction = tmpl.format(**words)
    if family == "pick":
        subgoals = [Subgoal("pick", c[0])]
    elif family in ("place", "pick_then_place"):
        subgoals = [Subgoal("place", c[0], p[0])]
    elif family == "stack":
        subgoals = [Subgoal("place", c[0], c[1])]
    elif family == "push":
        subgoals = [Subgoal("push", c[0], direction=direction)]
    else:
        subgoals = [Subgoal("place", c[0], p[0]), Subgoal("place", c[1], p[1])]
    steps = [s.format(**words) for s in STEP_TEMPLATES[family]] if family in STEP_TEMPLATES else [instruction]
    return TaskSpec(family=family, instruction=instruction, steps=steps, subgoals=subgoals, objects=cubes + plates)


def top_z(name: str) -> float:
    """Height of the object's top surface above its centre."""
    return CUBE_HALF if name.endswith("cube") else PLATE_HALF_HEIGHT


def subgoal_done(goal: Subgoal, pos: dict[str, np.ndarray], start_xy: dict[str, tuple[float, float]],
                 gripper_width: float) -> bool:
    """Success of one subgoal from the physics state (object centres ``pos``, metres)."""
    p = pos[goal.obj]
    if goal.kind == "pick":
        return bool(p[2] > CUBE_HALF + 0.05)
    if goal.kind == "push":
        moved = (p[1] - start_xy[goal.obj][1]) * goal.direction
        return bool(moved > 0.05 and p[2] < CUBE_HALF + 0.01)
    t = pos[goal.target]
    resting_z = t[2] + top_z(goal.target) + CUBE_HALF
    radius = PLATE_RADIUS - 0.01 if goal.target.endswith("plate") else 0.02
    on_top = np.linalg.norm(p[:2] - t[:2]) < radius and abs(p[2] - resting_z) < 0.012
    return bool(on_top and gripper_width > 0.045)  # released, not still held


def task_success(task: TaskSpec, pos: dict[str, np.ndarray], gripper_width: float) -> bool:
    return all(subgoal_done(g, pos, task.start_xy, gripper_width) for g in task.subgoals)


__all__ = ["FAMILIES", "Subgoal", "TaskSpec", "make_task", "task_success", "subgoal_done", "top_z", "COLORS"]
