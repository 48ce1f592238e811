"""Instructions that differ from a given one in exactly one attribute, as mined negatives.

"put the red cube on the blue plate" has, among others, the colour variant "put the green cube
on the blue plate", the target variant "put the red cube on the yellow plate", the object variant
"put the red plate on the blue plate", the verb variant "push the red cube on the blue plate"
and, for pushes, the direction variant ("left" <-> "right"). Each variant names another task, so
as a negative it teaches composition: the image must tell which attribute is wrong.

Pure text rewriting over the tabletop vocabulary; a synonym swap ("cube" -> "block") is never a
variant, since it keeps the meaning.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..sim.scene import COLORS
from ..sim.tasks import NOUN_KIND, NOUNS, OBJECT_MENTION

ATTRIBUTES: tuple[str, ...] = ("colour", "object", "target", "verb", "direction")
_COLOURS = tuple(COLORS)
_OTHER_KIND = {"cube": "plate", "plate": "cube"}
# Verb phrases at the start of an instruction and a verb of another action to swap in.
_VERBS: tuple[tuple[str, str], ...] = (
    ("pick up", "push"), ("grab", "push"), ("lift", "push"), ("after picking up", "after pushing"),
    ("push", "lift"), ("slide", "lift"), ("shove", "lift"),
    ("put down", "push"), ("put", "push"), ("place", "push"), ("set", "push"), ("lower", "lift"), ("stack", "push"),
)


def _mentions(text: str) -> list[re.Match[str]]:
    return list(OBJECT_MENTION.finditer(text))


def _replace(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def attribute_variants(text: str) -> dict[str, list[str]]:
    """Every one-attribute variant of ``text`` by attribute (empty lists where the attribute does
    not occur). Deterministic; each variant differs from ``text``."""
    out: dict[str, list[str]] = {a: [] for a in ATTRIBUTES}
    mentions = _mentions(text)
    if mentions:
        first, last = mentions[0], mentions[-1]
        for c in _COLOURS:
            if c != first.group(1):
                out["colour"].append(_replace(text, first.start(1), first.end(1), c))
            if len(mentions) > 1 and c != last.group(1):
                out["target"].append(_replace(text, last.start(1), last.end(1), c))
        kind = NOUN_KIND[first.group(2)]
        out["object"].append(_replace(text, first.start(2), first.end(2), NOUNS[_OTHER_KIND[kind]][0]))
    for verb, other in _VERBS:
        if re.match(rf"{verb}\b", text):
            out["verb"].append(other + text[len(verb):])
            break
    for a, b in (("left", "right"), ("right", "left")):
        m = re.search(rf"\b{a}", text)
        if m:
            out["direction"].append(_replace(text, m.start(), m.end(), b))
            break
    return {k: [v for v in vs if v != text] for k, vs in out.items()}


def sample_attribute_negatives(text: str, k: int, rng: np.random.Generator) -> list[str]:
    """``k`` one-attribute variants of ``text``, spread over the attributes it has (round robin
    over attributes in random order, then a random variant of each). Fewer when the text has fewer
    distinct variants; an empty list when it has none."""
    by_attr = {a: list(v) for a, v in attribute_variants(text).items() if v}
    picked: list[str] = []
    attrs = [a for a in ATTRIBUTES if a in by_attr]
    while len(picked) < k and attrs:
        for a in [attrs[i] for i in rng.permutation(len(attrs))]:
            pool = by_attr[a]
            picked.append(pool.pop(int(rng.integers(len(pool)))))
            if not pool:
                attrs.remove(a)
            if len(picked) == k:
                break
    return picked


def names_held_out(text: str, hold_out: Sequence[str]) -> bool:
    """Whether an instruction text falls under a hold-out pattern (``target=yellow_plate``,
    ``object=red_cube``, ``family=...``, ``instruction~REGEX``), read from the text itself: a
    mined negative must never show the trainer a held-out composition. The parsed subgoals stand
    for the task, and their action kind (pick, place, push) for its family; unparseable text
    matches only ``instruction~`` patterns."""
    from ..sim.rules_policy import InstructionParseError, parse_instruction
    from .bag_dataset import task_matches_hold_out

    try:
        goals = parse_instruction(text)
    except InstructionParseError:
        goals = []
    # parse_instruction gives one kind for all its subgoals (a push, a pick, or places)
    task = {"family": goals[0].kind if goals else None, "subgoals": [vars(g) for g in goals]}
    return any(task_matches_hold_out(task, text, pattern) for pattern in hold_out)


class AttributeNegatives:
    """Per instruction, its one-attribute variants minus those a hold-out pattern covers; draws a
    fixed number per instruction (cycling when it has fewer)."""

    def __init__(self, texts: Sequence[str], hold_out: Sequence[str] = ()) -> None:
        self.variants: dict[str, list[str]] = {}
        for t in sorted(set(texts)):
            flat = [v for vs in attribute_variants(t).values() for v in vs]
            self.variants[t] = [v for v in dict.fromkeys(flat) if not names_held_out(v, hold_out)]

    def all_texts(self) -> list[str]:
        return sorted({v for vs in self.variants.values() for v in vs})

    def sample(self, texts: Sequence[str], k: int, rng: np.random.Generator) -> list[str]:
        """-> len(texts) * k variants, row-major (text i's k variants together)."""
        out: list[str] = []
        for t in texts:
            pool = self.variants.get(t) or [t]
            if pool == [t]:
                raise ValueError(f"no one-attribute variant of {t!r}: cannot draw attribute negatives")
            order = rng.permutation(len(pool))
            out += [pool[int(order[j % len(pool)])] for j in range(k)]
        return out
