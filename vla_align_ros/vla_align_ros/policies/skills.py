"""What the demonstrations taught about *how* to act, and the intent head that says *which* of
those motions an instruction asks for.

- ``StepSkill``: one kind of demonstrated step (a token such as ``grasp``, ``place:0`` for the
  lowest release height, ``push:+y``) with the heights and push length measured from the
  demonstrations' keyframes.
- ``SkillModel``: the step skills, the motions (sequences of step tokens, e.g.
  ``[place:0, place:0]``) demonstrated often enough to be classes, the hand's orientation at the
  grasp, and a linear intent head over a pretrained sentence encoder's embedding of the
  instruction. Its last class is ``none``: not a request for motion. Built by
  ``training.skills.build_skill_model``; saved as ``skills.json`` beside the checkpoint's
  weights.
- ``SentenceEncoder``: the pretrained all-MiniLM-L6-v2 (shipped by a package, read from disk),
  mean-pooled and normalised.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

SKILLS_FILE = "skills.json"
NONE_INTENT = "none"


@dataclass
class StepSkill:
    token: str  # "grasp", "place:K" (K-th release height, lowest first) or "push:<axis>"
    kind: str  # "grasp" | "place" | "push"
    grasp_h: float  # hand above the table where it closed (or pushed), m
    lift_h: float  # hand above the table while carrying, m
    release_h: float = 0.0  # place: hand above the table where it opened, m
    push: tuple[float, float] = (0.0, 0.0)  # push: the hand's (dx, dy) along the table, m
    behind: float = 0.0  # push: how far behind the object (along the push) the hand starts, m
    # place: the target is found like an object to grasp (object_query + the target's phrase): the
    # demonstrations' releases lay on what that query finds (a cube to stack on, not a plate)
    target_by_query: bool = False
    # the map peaks the training demonstrations' own first frames gave (5th percentile; 0 = not measured)
    pick_peak_p5: float = 0.0
    place_peak_p5: float = 0.0
    count: int = 0  # demonstrated steps behind these figures


@dataclass
class SkillModel:
    skills: dict[str, StepSkill]
    intents: list[list[str]]  # class k: its step tokens; the last is [] (NONE_INTENT)
    orientation: list[list[float]]  # (3, 3) the hand's rotation at the grasp (base frame)
    weight: list[list[float]]  # (C, D) intent head
    bias: list[float]  # (C,)
    encoder: str = "all-MiniLM-L6-v2"
    table_z: float = 0.0
    # the words the demonstrations used to ask for a grasp ("pick up "): a pushed object is found
    # by asking the pick map where it would grasp it ("" = use the push phrase's own map)
    object_query: str = ""
    stats: dict = field(default_factory=dict)  # how it was built (counts, training accuracy)

    @staticmethod
    def object_plane(skills: dict[str, StepSkill]) -> float | None:
        """Height above the table of the point a grasp-query peak marks: half the demonstrated
        grasp height (where the keyframes put a grasped object's pick point); None without grasps."""
        return 0.5 * skills["grasp"].grasp_h if "grasp" in skills else None

    @property
    def intent_names(self) -> list[str]:
        return [" + ".join(t) if t else NONE_INTENT for t in self.intents]

    def save(self, folder: str | Path) -> Path:
        d = asdict(self)
        d["skills"] = {k: asdict(v) for k, v in self.skills.items()}
        path = Path(folder) / SKILLS_FILE
        path.write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
        if (Path(folder) / "manifest.json").is_file():  # verified on load like the weights
            from ..model.checkpoint import add_to_manifest

            add_to_manifest(folder, SKILLS_FILE)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "SkillModel":
        path = Path(folder) / SKILLS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: build it from the recording the run was trained on with "
                                    f"`vla-align skills --bags BAG --run {Path(folder).parent}`")
        d = json.loads(path.read_text(encoding="utf-8"))
        d["skills"] = {k: StepSkill(**{**v, "push": tuple(v["push"])}) for k, v in d["skills"].items()}
        return cls(**d)

    def intent_probabilities(self, embedding: np.ndarray) -> np.ndarray:
        """(D,) sentence embedding -> (C,) class probabilities."""
        logits = np.asarray(self.weight) @ embedding + np.asarray(self.bias)
        e = np.exp(logits - logits.max())
        return e / e.sum()


class SentenceEncoder:
    """Pretrained sentence embeddings (mean-pooled token states, unit length), on the CPU."""

    def __init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ..model.text import minilm_path

        path = str(minilm_path())
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def __call__(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """texts -> (N, 384) float32."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                tok = self.tokenizer(list(texts[i:i + batch]), padding=True, truncation=True, max_length=64,
                                     return_tensors="pt")
                h = self.model(**tok).last_hidden_state  # (B, T, D)
                m = tok["attention_mask"][..., None].float()
                e = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)
