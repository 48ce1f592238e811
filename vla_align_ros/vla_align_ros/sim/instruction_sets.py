"""Evaluation instructions beyond the simulator's templates, written from an episode's task:

- ``PARAPHRASES``: what a user might say for the same task, with colour, noun and verb words no
  template contains, "the red one", "whichever cube is red", polite forms and reordered
  clauses. Each form is in the ``tune`` part (looked at while choosing the policy's settings)
  or the ``test`` part (never looked at before measuring).
- ``MUST_NOT_MOVE``: instructions the arm must not act on: questions, negations, small talk,
  and requests naming an object or colour that is not on the table.

Evaluation only: nothing here is read by training or by the robot side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tasks import TaskSpec

COLOUR_WORDS = {"red": ("crimson", "scarlet"), "green": ("emerald", "lime"), "blue": ("navy", "azure"),
                "yellow": ("golden", "lemon")}
CUBE_WORDS = ("box", "brick", "little block")
PLATE_WORDS = ("saucer", "tray", "platter")
ABSENT_COLOURS = ("purple", "orange", "pink")

# {X}: the object ("red cube"), {c}: its colour, {cs}: a colour synonym, {n}: a noun synonym,
# {Y}: the target ("blue plate" or "green cube"), {t}: its colour, {ts}/{tn} synonyms, {d}: left/right,
# {Z}/{W}: the second pair of a two-place task.
PARAPHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "tune": {
        "place": ("could you put the {X} on the {Y}, please", "I'd like the {X} on the {Y}",
                  "onto the {Y}, put the {X}", "whichever cube is {c}, put it on the {Y}",
                  "place the {cs} cube on the {Y}"),
        "stack": ("put the {X} on top of the {t} one", "could you stack the {X} onto the {Y}"),
        "pick": ("please pick up the {X}", "take the {X}", "grab the {cs} {n}"),
        "push": ("nudge the {X} to the {d}", "please push the {X} to the {d} side"),
        "pick_then_place": ("first pick up the {X}, then put it on the {Y}",),
        "place_two": ("put the {X} on the {Y}, and after that the {Z} on the {W}",),
    },
    "test": {
        "place": ("please move the {X} onto the {Y}", "take the {X} and drop it on the {Y}",
                  "the {X} goes on the {Y}", "put the {c} one on the {ts} {tn}", "set the {cs} {n} on the {Y}"),
        "stack": ("set the {c} one on top of the {Y}", "place the {cs} {n} on the {Y}"),
        "pick": ("could you lift the {X} up", "raise the {c} one", "pick the {cs} cube up, please"),
        "push": ("move the {c} one a bit to the {d}", "to the {d}, push the {X}"),
        "pick_then_place": ("take the {X} and then place it on the {Y}",),
        "place_two": ("first the {X} onto the {Y}, then the {Z} onto the {W}",),
    },
}

MUST_NOT_MOVE: dict[str, tuple[str, ...]] = {
    "negation": ("please do not {i}", "don't ever {i}", "you should not {i}"),
    "question": ("is the {X} on the {Y}?", "where is the {X}?", "can you see the {X}?", "what colour is the {Y}?"),
    "small_talk": ("good morning", "what a lovely day", "thanks, that was great", "how old are you?",
                   "let's take a break"),
    "absent": ("pick up the {a} cube", "put the {X} on the {ap} plate", "pick up the {o} cube",
               "put the {o} block on the {Y}"),
}


@dataclass(frozen=True)
class EvalInstruction:
    text: str
    kind: str  # paraphrase part ("tune"/"test") or must-not-move category
    form: str


def _words(task: TaskSpec, rng: np.random.Generator) -> dict[str, str]:
    g = task.subgoals[0]
    c, kind = g.obj.split("_")
    w = {"X": f"{c} {kind}", "c": c, "cs": str(rng.choice(COLOUR_WORDS[c])), "n": str(rng.choice(CUBE_WORDS)),
         "d": "right" if g.direction > 0 else "left"}
    if g.target:
        t, tkind = g.target.split("_")
        w.update(Y=f"{t} {tkind}", t=t, ts=str(rng.choice(COLOUR_WORDS[t])),
                 tn=str(rng.choice(PLATE_WORDS if tkind == "plate" else CUBE_WORDS)))
    else:  # no target: name a plate on the table (questions, absent-object requests)
        plate = next(o for o in task.objects if o.endswith("plate"))
        w.update(Y=plate.replace("_", " "), t=plate.split("_")[0])
    if len(task.subgoals) > 1:
        g2 = task.subgoals[1]
        w.update(Z=g2.obj.replace("_", " "), W=g2.target.replace("_", " "))
    on_table = {o.split("_")[0] for o in task.objects if o.endswith("cube")}
    plates = {o.split("_")[0] for o in task.objects if o.endswith("plate")}
    w["a"] = next(col for col in COLOUR_WORDS if col not in on_table)
    w["ap"] = next(col for col in COLOUR_WORDS if col not in plates)
    w["o"] = str(rng.choice(ABSENT_COLOURS))
    w["i"] = task.instruction
    return w


def paraphrase(task: TaskSpec, part: str, index: int, rng: np.random.Generator) -> EvalInstruction:
    """The ``index``-th (mod the count) form of ``part`` for the task's family, filled in."""
    forms = PARAPHRASES[part][task.family]
    form = forms[index % len(forms)]
    return EvalInstruction(form.format(**_words(task, rng)), part, form)


def must_not_move(task: TaskSpec, index: int, rng: np.random.Generator) -> EvalInstruction:
    """The ``index``-th instruction of the must-not-move set (categories in turn), filled in."""
    cats = list(MUST_NOT_MOVE)
    cat = cats[index % len(cats)]
    forms = MUST_NOT_MOVE[cat]
    form = forms[(index // len(cats)) % len(forms)]
    return EvalInstruction(form.format(**_words(task, rng)), cat, form)
