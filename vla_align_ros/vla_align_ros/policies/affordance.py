"""The default policy: the model decides what to do and where, demonstrated motions carry it out.

- *What*: the intent head (``skills.SkillModel``) classifies the instruction into one of the
  motions the demonstrations showed (e.g. ``place:0``, ``grasp``, ``push:-y``,
  ``place:0 + place:0``) or ``none``. ``none``, or no class above ``min_intent``, is a refusal.
- *Where*: for each motion step in turn, the step's phrase (``text_input.split_steps``) is
  grounded by the spatial head's pick and place maps (``InferenceSession.locate_steps``); their
  peaks are lifted onto horizontal planes at the heights the demonstrations' keyframes give
  (the camera from camera_info and TF). A step whose maps never peak above ``min_confidence`` (pick) and
  ``min_place_confidence`` (place), or the lower peaks the skill's own demonstrations reached, within
  ``look_frames`` frames is a refusal (``not_in_view``).
  A push's object is found by asking the pick map where it would grasp it (the demonstrations'
  own grasp wording, ``SkillModel.object_query``, before the push's object phrase); the hand
  starts the demonstrated distance behind it. A place skill whose demonstrations let go on what
  that same query finds for their target (a cube to stack on; not a plate) finds its target so.
- *How*: generic primitives (``primitives``) with the demonstrated heights, push length and hand
  orientation, driven by the robot description's forward kinematics.

Each step is located on the frames just before it runs: after a step the scene is looked at
again.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..text_input import object_phrase, split_steps, target_phrase
from .base import ActionChunk, Observation, Policy, Refusal
from .primitives import (PrimitiveStep, ServoGains, Waypoint, drive, pick_waypoints, place_waypoints,
                         push_waypoints)
from .robot import RobotInterface
from .skills import SentenceEncoder, SkillModel, StepSkill

FINAL_PHASES = {"place": ("release", "retreat"), "grasp": ("lift",), "push": ("push", "retreat")}


def step_phrases(instruction: str, n: int) -> list[tuple[str, str]] | None:
    """For each of ``n`` motion steps: (the phrase whose pick map says where, the phrase whose
    place map says where to). The instruction's own steps (``split_steps``), one per motion
    step or two ("pick up A" then "put it on B"); the whole instruction for a one-step motion;
    None when the counts do not fit."""
    parts = split_steps(instruction)
    if len(parts) == n:
        return [(s, s) for s in parts]
    if len(parts) == 2 * n:
        return [(parts[2 * k], parts[2 * k + 1]) for k in range(n)]
    return [(instruction, instruction)] if n == 1 else None


class AffordancePolicy(Policy):
    name = "affordance"

    def __init__(self, session: Any, robot: RobotInterface, skills: SkillModel | None = None,
                 encoder: SentenceEncoder | None = None, min_intent: float = 0.5, min_confidence: float = 0.6,
                 min_place_confidence: float = 0.9, localise_frames: int = 3, look_frames: int = 12,
                 gains: ServoGains = ServoGains()) -> None:
        if skills is None:
            if session.checkpoint_dir is None:
                raise ValueError("the affordance policy needs the checkpoint's skills.json (pass skills=)")
            skills = SkillModel.load(session.checkpoint_dir)
        self.session, self.robot, self.skills = session, robot, skills
        self.encoder = encoder or SentenceEncoder()
        # map peaks below these are not trusted (figures in docs/policies.md: the peak over a named
        # object in view vs one that is absent)
        self.min_intent, self.min_confidence, self.min_place_confidence = min_intent, min_confidence, min_place_confidence
        self.localise_frames, self.look_frames = localise_frames, look_frames
        self.gains = gains
        self.orientation = np.asarray(skills.orientation)
        self._reset_plan([], [])

    def _reset_plan(self, tokens: list[str], phrases: list[tuple[str, str]]) -> None:
        self.tokens = tokens  # the motion's step tokens
        self.phrases = phrases  # per motion step: (phrase whose pick map says where, phrase whose place map says where to)
        self.step = 0
        self._sightings: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._looked = 0
        self._best = (0.0, 0.0)  # best (pick, place) map peak seen for this step
        self._motion: Iterator[PrimitiveStep] | None = None
        self._q = np.zeros(len(self.robot.joint_names))
        self.located: list[dict[str, list[float]]] = []  # per step, where it acted (base frame), for logs
        self._gripper = self.robot.gripper_open
        self._start: np.ndarray | None = None  # the hand's position at the instruction's first frame
        self._announce: dict[str, list[float]] | None = None

    # ---- what ----------------------------------------------------------------------------------
    def intent(self, instruction: str) -> tuple[list[str], float, np.ndarray]:
        """(step tokens of the most likely motion ([] for none), its probability, all probabilities)."""
        probs = self.skills.intent_probabilities(self.encoder([instruction])[0])
        k = int(np.argmax(probs))
        return self.skills.intents[k], float(probs[k]), probs

    def reset(self, instruction: str) -> str:
        self._reset_plan([], [])
        tokens, p, probs = self.intent(instruction)
        if not tokens:
            raise Refusal("not_a_command", f"{instruction!r} does not ask for a motion (p(none) = {p:.2f})")
        if p < self.min_intent:
            names = self.skills.intent_names
            top = ", ".join(f"{names[i]} {probs[i]:.2f}" for i in np.argsort(-probs)[:2])
            raise Refusal("unclear", f"{instruction!r} matches no demonstrated motion well enough ({top})")
        phrases = step_phrases(instruction, len(tokens))
        if phrases is None:
            raise Refusal("unclear", f"{instruction!r} reads as {len(split_steps(instruction))} step(s) but its "
                                     f"motion ({' + '.join(tokens)}) has {len(tokens)}")
        self._reset_plan(tokens, phrases)
        return f"{' + '.join(tokens)} (p={p:.2f}) over " + " | ".join(
            a if a == b else f"{a} / {b}" for a, b in phrases)

    # ---- where ---------------------------------------------------------------------------------
    def _skill(self) -> StepSkill:
        return self.skills.skills[self.tokens[self.step]]

    def _look(self, image: np.ndarray, frame: int | None = None) -> None:
        """One frame's sighting of the current step's pick (and place) point."""
        skill = self._skill()
        pick_phrase, place_phrase = self.phrases[self.step]
        thing = object_phrase(pick_phrase) if skill.kind == "push" and self.skills.object_query else None
        if thing is not None:  # the object a push moves: where the pick map would grasp it
            pick_phrase = self.skills.object_query + thing
        target = target_phrase(place_phrase) if skill.target_by_query and self.skills.object_query else None
        if target is not None:  # a target the demonstrations released onto: found like an object to grasp
            texts = [pick_phrase, self.skills.object_query + target]
        else:
            texts = [pick_phrase] if pick_phrase == place_phrase or skill.kind != "place" else [pick_phrase, place_phrase]
        maps = self.session.locate_steps(image, texts, key=frame)
        if target is not None:
            pick, place = maps[0][0], maps[1][0]
        else:
            pick, place = maps[0][0], maps[-1][1] if skill.kind == "place" and len(maps[-1]) > 1 else None
        self._best = (max(self._best[0], pick[2]), max(self._best[1], place[2]) if place is not None else 1.0)
        self._looked += 1
        min_pick, min_place = self._floors(skill)
        if target is not None:
            min_place = min_pick  # a grasp map's peak, on the pick scale
        if pick[2] < min_pick or (place is not None and place[2] < min_place):
            return
        camera = self.robot.camera_for(image.shape[:2])
        tz = self.robot.table_z
        # where a grasp-query peak lies (as measured by training.skills); object_query implies grasps
        plane_h = SkillModel.object_plane(self.skills.skills)
        try:
            if thing is not None:  # the object's centre, then the demonstrated start behind it
                obj = camera.backproject(pick[0], pick[1], tz + plane_h)
                v = np.asarray(skill.push) / max(float(np.hypot(*skill.push)), 1e-9)
                p = obj - np.r_[v * skill.behind, 0.0]
            else:
                p = camera.backproject(pick[0], pick[1], tz + 0.5 * skill.grasp_h)
            place_z = tz + plane_h if target is not None else tz + skill.release_h - skill.grasp_h
            q = None if place is None else camera.backproject(place[0], place[1], place_z)
        except ValueError:  # a pixel whose ray misses the table
            return
        self._sightings.append((p, q))

    def _floors(self, skill: StepSkill) -> tuple[float, float]:
        """The peaks a step's maps must reach: the policy's thresholds, lowered to what the
        skill's own training demonstrations reached (their 5th percentile) where that is lower."""
        pick, place = self.min_confidence, self.min_place_confidence
        if skill.pick_peak_p5 > 0:
            pick = min(pick, skill.pick_peak_p5)
        if skill.place_peak_p5 > 0:
            place = min(place, skill.place_peak_p5)
        return pick, place

    def _start_motion(self) -> None:
        skill, r = self._skill(), self.robot
        pick = np.median(np.stack([s[0] for s in self._sightings]), axis=0)
        tz, opened, closed = r.table_z, r.gripper_open, r.gripper_closed
        where = {"pick": pick.round(4).tolist()}
        if skill.kind == "push":
            wps = push_waypoints(pick, np.asarray(skill.push), tz + skill.grasp_h, tz + skill.lift_h, closed, self._pose)
        else:
            wps = pick_waypoints(pick, tz + skill.grasp_h, tz + skill.lift_h, opened, closed, self._pose)
            if skill.kind == "place":
                place = np.median(np.stack([s[1] for s in self._sightings]), axis=0)
                where["place"] = place.round(4).tolist()
                wps += place_waypoints(place, tz + skill.release_h, tz + skill.lift_h, opened, closed, self._pose)
        if self.step < len(self.tokens) - 1 and self._start is not None:
            # before the next step is looked for: the hand back where it was when the instruction
            # came, out of the camera's way
            start = self._start
            wps.append(lambda: Waypoint("clear", start, opened if skill.kind != "push" else closed))
        self.located.append(where)
        self._announce = where  # reported once, with the step's first action
        self._motion = drive(iter(wps), self._pose, self.orientation, self.gains)

    def _pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.robot.ee_pose(self._q)

    # ---- acting --------------------------------------------------------------------------------
    def _chunk(self, twist: np.ndarray, phase: str, finishing: bool = False) -> ActionChunk:
        row = np.concatenate([twist, [self._gripper]]).astype(np.float32)  # (7,)
        info: dict[str, Any] = {"step": self.step, "steps": len(self.tokens)}
        if self._announce is not None:
            info["located"], self._announce = self._announce, None
        return ActionChunk(np.repeat(row[None], self.session.horizon, axis=0), phase=phase, finishing=finishing,
                           info=info)

    def act(self, obs: Observation) -> ActionChunk:
        if not self.tokens:
            raise Refusal("no_instruction", "reset the policy with an instruction first")
        self._q = np.asarray(obs.joints, dtype=float)
        if self._start is None:
            self._start = self._pose()[0]
        while self.step < len(self.tokens):
            if self._motion is None:
                self._look(obs.image, obs.frame)
                if len(self._sightings) >= self.localise_frames:
                    self._start_motion()
                else:
                    if self._looked >= self.look_frames:
                        floors = self._floors(self._skill())
                        raise Refusal("not_in_view", f"step {self.step + 1} ({self.phrases[self.step][0]!r}): the "
                                                     f"model finds no confident place to act in {self._looked} frames "
                                                     f"(best peaks: pick {self._best[0]:.2f} of {floors[0]:.2f}, "
                                                     f"place {self._best[1]:.2f} of {floors[1]:.2f})")
                    return self._chunk(np.zeros(6), "localise")
            s = next(self._motion, None)
            if s is not None:
                self._gripper = float(s.gripper)
                last = self.step == len(self.tokens) - 1
                return self._chunk(s.twist, s.phase, last and s.phase in FINAL_PHASES[self._skill().kind])
            self.step += 1  # this step's primitives are done: look again before the next
            self._motion, self._sightings, self._looked, self._best = None, [], 0, (0.0, 0.0)
        return self._chunk(np.zeros(6), "done", finishing=True)
