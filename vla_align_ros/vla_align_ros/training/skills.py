"""Build a ``policies.skills.SkillModel`` from labelled demonstrations (``data.keyframes``):

- every demonstrated step becomes a token: ``grasp`` (picked and held), ``place:K`` (grasped,
  then released at the K-th of the release heights the demonstrations show, lowest first:
  heights closer than ``HEIGHT_GAP`` are one height) or ``push:<axis>`` (the push's main
  direction in the base frame);
- each token's heights and push length are the medians over its steps;
- an episode's motion is its tokens in order; motions shown in at least ``MIN_EXAMPLES``
  training episodes are the intent classes, plus ``none``;
- the intent head is a multinomial logistic regression on the pretrained sentence embedding of
  the training instructions, labelled with their episodes' motions, and the same instructions
  asked politely (``POLITE``, same label). Its ``none`` examples are non-commands synthesised from
  the same instructions (``NEGATIONS``, ``QUESTIONS``) and small talk (``SMALL_TALK``). Held-out
  episodes contribute nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..policies.skills import NONE_INTENT, SentenceEncoder, SkillModel, StepSkill

HEIGHT_GAP = 0.015  # m: release heights further apart than this are different placements
MIN_EXAMPLES = 3

# Training-side data synthesis for the "none" class: the decision at run time is the head's.
NEGATIONS = ("do not {i}", "don't {i}", "never {i}", "you must not {i}")
POLITE = ("please {i}", "could you {i}, please?", "{i}, please")
QUESTIONS = ("did you {i}?", "why did you {i}?", "what happens if you {i}?", "who asked you to {i}?")
SMALL_TALK = ("hello", "hi there", "thank you", "thanks a lot", "good job", "how are you?", "what time is it?",
              "nice weather today", "tell me a joke", "who are you?", "what is your name?", "never mind",
              "that is all", "i am going for lunch", "the table looks tidy", "what can you see?",
              "are you ready?", "sing a song", "how many objects are there?", "what colour is the table?",
              "ok", "yes", "no", "wait a moment")


def _axis_name(v: np.ndarray) -> str:
    i = int(np.argmax(np.abs(v[:2])))
    return f"{'+' if v[i] >= 0 else '-'}{'xy'[i]}"


def _cluster_heights(values: list[float], gap: float = HEIGHT_GAP) -> list[float]:
    """Upper edges of the height clusters (sorted values split where they jump by > gap)."""
    v = sorted(values)
    edges = [a for a, b in zip(v, v[1:]) if b - a > gap]
    return edges + [float("inf")]


def step_tokens(labels, ee: np.ndarray, table_z: float, release_edges: list[float] | None
                ) -> list[tuple[str, dict]]:
    """A demonstration's steps -> [(token, measurements)]; ``release_edges`` None: ``place`` unnumbered."""
    out = []
    for k, s in enumerate(labels.steps):
        grasp_h = float(ee[s.act, 2] - table_z)
        if s.kind == "push":
            end = s.end if s.end is not None else len(ee) - 1
            vec = ee[end, :2] - ee[s.act, :2]
            seg = ee[s.act:end + 1, 2] - table_z
            after = ee[end:labels.step_frames(k).stop, 2] - table_z  # the retreat
            out.append((f"push:{_axis_name(vec)}", {"grasp_h": float(np.median(seg)), "push": vec,
                                                    "lift_h": float(after.max())}))
            continue
        end = s.end if s.end is not None else len(ee) - 1
        lift_h = float(ee[s.act:end + 1, 2].max() - table_z)
        if s.kind == "grasp":
            out.append(("grasp", {"grasp_h": grasp_h, "lift_h": lift_h}))
            continue
        release_h = float(ee[end, 2] - table_z)
        k = 0 if release_edges is None else next(i for i, e in enumerate(release_edges) if release_h <= e)
        out.append((f"place:{k}", {"grasp_h": grasp_h, "lift_h": lift_h, "release_h": release_h}))
    return out


def non_commands(instructions: Sequence[str], rng: np.random.Generator, per_form: int = 1) -> list[str]:
    """Negated and questioned forms of ``instructions`` and small talk: examples of ``none``."""
    out = list(SMALL_TALK)
    for text in instructions:
        for forms in (NEGATIONS, QUESTIONS):
            for j in rng.choice(len(forms), size=per_form, replace=False):
                out.append(forms[j].format(i=text))
    return out


def fit_intent_head(x: np.ndarray, y: np.ndarray, classes: int, seed: int = 0, steps: int = 1000,
                    weight_decay: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced: (N, D), (N,) -> weight (C, D), bias (C,)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    w = (torch.randn(classes, x.shape[1], generator=g) * 0.01).requires_grad_()
    b = torch.zeros(classes, requires_grad=True)
    counts = torch.bincount(yt, minlength=classes).clamp(min=1).float()
    class_w = counts.sum() / (classes * counts)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        logits = xt @ w.T * 10.0 + b  # unit-length embeddings: a fixed scale of 10 on the logits
        loss = torch.nn.functional.cross_entropy(logits, yt, weight=class_w) + weight_decay * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (w.detach() * 10.0).numpy(), b.detach().numpy()


def grasp_query(instructions: Sequence[str]) -> str:
    """The most common words before the object in instructions that asked for a grasp
    ("pick up the red cube" -> "pick up "), "" when none names an object."""
    from ..text_input import object_phrase

    prefixes = Counter()
    for text in instructions:
        phrase = object_phrase(text)
        if phrase is not None:
            prefixes[text[: text.index(phrase)]] += 1
    return prefixes.most_common(1)[0][0] if prefixes else ""


def queried_point(locate, ep, robot, query: str, phrase: str, plane_h: float) -> tuple[np.ndarray, float]:
    """Where the model's pick map would grasp ``phrase`` on an episode's first frame (asked
    ``query`` + ``phrase``), lifted onto the plane ``plane_h`` above the table: (xyz, peak)."""
    from ..data.keyframes import episode_camera

    (row, col, conf), = (m[0] for m in locate(ep.images[0], [query + phrase]))
    return episode_camera(ep, robot).backproject(row, col, robot.table_z + plane_h), conf


def push_behind(demos: list[tuple], robot, locate, query: str, plane_h: float) -> list[float]:
    """For each push demonstration (``demos``: [(episode, labels, ee path (T, 3))]): how far
    behind the pushed object (along the push) the hand started. The object is where the model's
    pick map would grasp it (``queried_point``)."""
    from ..text_input import object_phrase

    out = []
    for ep, labels, ee in demos:
        steps = labels.steps
        phrase = object_phrase(ep.instruction)
        if len(steps) != 1 or steps[0].kind != "push" or phrase is None:
            continue
        obj, conf = queried_point(locate, ep, robot, query, phrase, plane_h)
        if conf < 0.5:
            continue
        s = steps[0]
        v = ee[s.end, :2] - ee[s.act, :2]
        out.append(float((obj[:2] - ee[s.act, :2]) @ v / max(np.linalg.norm(v), 1e-9)))
    return out


def demo_peaks(skills: dict[str, StepSkill], demos: list[tuple], locate, query: str) -> None:
    """Each single-step skill's 5th-percentile pick and place map peaks over demonstrations'
    first frames (``demos``: [(episode, motion)]), asked as the policy asks (a push: ``query`` +
    its object)."""
    from ..text_input import object_phrase

    from ..policies.affordance import step_phrases

    peaks: dict[str, list[tuple[float, float]]] = {}
    for ep, motion in demos:
        phrases = step_phrases(ep.instruction, len(motion)) if len(motion) == 1 else None
        if phrases is None or motion[0] not in skills:
            continue
        texts = list(dict.fromkeys(phrases[0]))  # the pick phrase, then the place phrase if it differs
        if motion[0].startswith("push") and query and object_phrase(texts[0]):
            texts = [query + object_phrase(texts[0])]
        maps = locate(ep.images[0], texts)
        peaks.setdefault(motion[0], []).append((maps[0][0][2], maps[-1][1][2]))
    for t, v in peaks.items():
        a = np.asarray(v)
        skills[t].pick_peak_p5 = float(np.percentile(a[:, 0], 5))
        skills[t].place_peak_p5 = float(np.percentile(a[:, 1], 5))


TARGET_MATCH_M = 0.03  # a release this close to what the grasp query finds lay on that object
TARGET_MATCH_SHARE = 0.8  # ... for this share of a place skill's demonstrations: find its target that way


def release_on_queried_target(demos: list[tuple], robot, locate, query: str, plane_h: float) -> list[bool]:
    """For each one-step place demonstration (``demos``: [(episode, labels, ee path (T, 3))]):
    whether the hand let go within ``TARGET_MATCH_M`` (horizontally) of where the model's pick map
    would grasp the target (``queried_point``)."""
    from ..policies.affordance import step_phrases
    from ..text_input import target_phrase

    out = []
    for ep, labels, ee in demos:
        steps = labels.steps
        phrases = step_phrases(ep.instruction, 1)
        target = target_phrase(phrases[0][1]) if phrases else None
        if len(steps) != 1 or steps[0].kind != "place" or target is None:
            continue
        where, conf = queried_point(locate, ep, robot, query, target, plane_h)
        out.append(bool(conf >= 0.5 and np.linalg.norm(where[:2] - ee[steps[0].end, :2]) < TARGET_MATCH_M))
    return out


def build_skill_model(episodes: list, demos: list, train_idx: Sequence[int], robot, kinematics,
                      encoder: SentenceEncoder | None = None, seed: int = 0, locate=None,
                      val_idx: Sequence[int] = ()) -> SkillModel:
    """Skills and intent head from the training split (``train_idx`` into ``episodes``/``demos``).
    ``locate`` (the trained model's ``InferenceSession.locate_steps``) measures where pushes start
    relative to the object (without it a push is centred on the object) and, on the validation
    episodes ``val_idx``, the map peaks each skill reaches on layouts it never trained on."""
    from ..data.keyframes import ee_path

    paths = {i: ee_path(episodes[i], kinematics) for i in train_idx}
    tz = robot.table_z
    releases = [m["release_h"] for i in train_idx for t, m in step_tokens(demos[i], paths[i][0], tz, None)
                if t.startswith("place")]
    edges = _cluster_heights(releases) if releases else [float("inf")]
    motions: dict[int, list[str]] = {}
    measured: dict[str, list[dict]] = {}
    grasp_rot = []
    for i in train_idx:
        ee, rot = paths[i]
        toks = step_tokens(demos[i], ee, tz, edges)
        motions[i] = [t for t, _ in toks]
        for (t, m), s in zip(toks, demos[i].steps):
            measured.setdefault(t, []).append(m)
            grasp_rot.append(rot[s.act])
    skills = {}
    for t, ms in sorted(measured.items()):
        med = {k: float(np.median([m[k] for m in ms])) for k in ("grasp_h", "lift_h")}
        release = float(np.median([m["release_h"] for m in ms])) if t.startswith("place") else 0.0
        push = tuple(float(v) for v in np.median([m["push"] for m in ms], axis=0)) if t.startswith("push") else (0.0, 0.0)
        skills[t] = StepSkill(t, t.split(":")[0], med["grasp_h"], med["lift_h"], release, push, len(ms))
    query = grasp_query([episodes[i].instruction for i in train_idx if motions[i] == ["grasp"]])
    plane_h = SkillModel.object_plane(skills)
    behind: dict[str, float] = {}
    target_share: dict[str, float] = {}
    if locate is not None and query and plane_h is not None:
        for t, sk in skills.items():
            shown = [(episodes[i], demos[i], paths[i][0]) for i in train_idx if motions[i] == [t]]
            if sk.kind == "push":
                d = push_behind(shown, robot, locate, query, plane_h)
                if d:
                    behind[t] = float(np.median(d))
            elif sk.kind == "place":
                hits = release_on_queried_target(shown, robot, locate, query, plane_h)
                if hits:
                    target_share[t] = float(np.mean(hits))
                    sk.target_by_query = target_share[t] >= TARGET_MATCH_SHARE
    for t, sk in skills.items():
        if sk.kind == "push":
            sk.behind = behind.get(t, 0.5 * float(np.hypot(*sk.push)))
    if locate is not None and val_idx:  # layouts the model never trained on: the peaks it reaches on new scenes
        val_motions = {i: [t for t, _ in step_tokens(demos[i], ee_path(episodes[i], kinematics)[0], tz, edges)]
                       for i in val_idx}
        demo_peaks(skills, [(episodes[i], val_motions[i]) for i in val_idx], locate, query)
    counts = Counter(tuple(m) for m in motions.values())
    intents = [list(m) for m, n in sorted(counts.items()) if n >= MIN_EXAMPLES] + [[]]
    index = {tuple(m): k for k, m in enumerate(intents)}
    texts, labels = [], []
    rng = np.random.default_rng(seed)
    for i in train_idx:
        k = index.get(tuple(motions[i]))
        if k is not None:
            text = episodes[i].instruction
            texts += [text, POLITE[rng.integers(len(POLITE))].format(i=text)]
            labels += [k, k]
    negatives = non_commands(sorted(set(texts)), rng)
    encoder = encoder or SentenceEncoder()
    x = encoder(texts + negatives)
    y = np.asarray(labels + [len(intents) - 1] * len(negatives))
    w, b = fit_intent_head(x, y, len(intents), seed)
    acc = float((np.argmax(x @ w.T + b, axis=1) == y).mean())
    # orientation: the chordal mean of the grasp rotations, projected back onto a rotation
    u, _, vt = np.linalg.svd(np.mean(grasp_rot, axis=0))
    orientation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    stats = {"episodes": len(train_idx), "motions": {" + ".join(m) or NONE_INTENT: n for m, n in counts.items()},
             "intent_examples": len(y), "non_command_examples": len(negatives), "train_accuracy": round(acc, 4),
             "release_height_edges": [e for e in edges if np.isfinite(e)],
             "push_behind": {t: ("measured" if t in behind else "centred") for t in skills if t.startswith("push")},
             "release_on_queried_target": {t: round(v, 3) for t, v in target_share.items()}}
    return SkillModel(skills, intents, orientation.tolist(), w.tolist(), b.tolist(), table_z=tz, stats=stats,
                      object_query=query)


def skills_from_demonstrations(episodes: list, demos: list, split: dict, robot_name: str, model,
                               seed: int = 0) -> SkillModel:
    """``build_skill_model`` on a run's split (train, and val_seen for the map-peak floors),
    measuring with ``model`` (a checkpoint folder or a ``TrimodalModel``)."""
    from ..inference import InferenceSession
    from ..robots.config import RobotConfig

    robot = RobotConfig.load(robot_name)
    session = InferenceSession(model)
    try:
        return build_skill_model(episodes, demos, split["train"], robot, robot.kinematics(), seed=seed,
                                 locate=session.locate_steps, val_idx=split.get("val_seen", []))
    finally:
        session.close()


def skills_for_run(bags: Sequence[str], run_dir: str | Path, log=print) -> SkillModel:
    """Build and save ``RUN/checkpoint/skills.json`` from the recording a run was trained on:
    its episodes as that run read and labelled them, its training split (``split.json``)."""
    from ..data.bags import BagTopics, JointLayout, read_episodes
    from .run_dir import RunDir
    from .trainer import label_demonstrations

    run = RunDir(run_dir)
    for f in (run.config, run.split):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: {run} is not a finished training run")
    raw = run.read_config()
    data = raw["data"]
    if data.get("profile") != "robot_observable":
        raise ValueError(f"{run} was trained with data.profile={data.get('profile')!r}; skills come from keyframe "
                         "labels (data.profile: robot_observable)")
    episodes, _ = read_episodes(bags, BagTopics(**data["topics"]).robot_observable(), data["slop"],
                                JointLayout.from_robot(data["robot"]))
    episodes, demos, _ = label_demonstrations(episodes, data["robot"])
    split = run.read_split()
    train_idx = split["train"]
    if max(train_idx, default=-1) >= len(episodes):
        raise ValueError(f"{run.split} names episode {max(train_idx)} but {list(bags)} has {len(episodes)} labelled "
                         "episodes: not the recording this run was trained on")
    model = skills_from_demonstrations(episodes, demos, split, data["robot"], run.checkpoint,
                                       seed=raw.get("seed", 0))
    path = model.save(run.checkpoint)
    log(f"[skills] {path}: {len(model.intents) - 1} motions + none from {model.stats['episodes']} training episodes "
        f"({model.stats['motions']}); intent head training accuracy {model.stats['train_accuracy']:.3f}")
    return model
