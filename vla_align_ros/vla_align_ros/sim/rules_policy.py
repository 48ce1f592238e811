"""The ``rules`` baseline policy: a rule parser over the simulator's object names decides what to
do, the spatial head says where each named object is in the image, the calibrated camera puts it
on the table, and the scripted expert's phase plan drives the end effector there. It knows the
simulator's vocabulary and plan by construction; it is kept to compare the default policy with.

Pure NumPy (plus the arm's forward kinematics passed in as a function), no ROS, no torch:

- ``parse_instruction``: instruction -> subgoals over canonical object names (``red_cube``),
  a rule parser over the tabletop vocabulary (colours, cube/block, plate/dish, pick/place/push
  verbs). Text it cannot parse raises ``InstructionParseError`` with the reason.
- ``CameraModel``: pixel -> ray in the base frame -> point on a horizontal plane.
- ``VOCABULARY``: every object the parser can name grounds the same image, and each pixel counts
  only for the phrase that scores it highest (``policies.maps.exclusive_logits``), so "the yellow
  plate" cannot be located on the yellow cube that its mask also lights up.
- ``GroundedPlanner``: localise every named object over the first frames (median), then run the
  same phase plan the scripted expert runs (``sim.expert.ScriptedExpert``) on the perceived
  positions, one action per frame.
- ``RulesPolicy``: the above behind the ``policies.Policy`` interface.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..policies.base import ActionChunk, Observation, Policy, Refusal
from ..robots.camera import CameraModel
from ..text_input import split_steps
from .scene import COLORS, CUBE_HALF, OBJECTS, PLATE_HALF_HEIGHT
from .tasks import NOUN_KIND, OBJECT_MENTION, Subgoal

_PUSH_RE = re.compile(r"\b(push|slide|shove)")
_DIRECTION_RE = re.compile(r"\b(left|right)(wards)?\b")


class InstructionParseError(ValueError):
    pass


def parse_instruction(text: str) -> list[Subgoal]:
    """"put the red block on the blue dish" -> [Subgoal("place", "red_cube", "blue_plate")].

    Objects are taken in order of mention: one object is a pick, two a place (the first onto the
    second), four two places, one with a push verb a push left or right."""
    low = text.lower()
    names = [f"{m.group(1)}_{NOUN_KIND[m.group(2)]}" for m in OBJECT_MENTION.finditer(low)]
    if not names:
        raise InstructionParseError(f"no object named in {text!r}: the rules baseline knows "
                                    f"{', '.join(COLORS)} {{cube, block, plate, dish}}")
    if _PUSH_RE.search(low):
        d = _DIRECTION_RE.search(low)
        if d is None or len(names) != 1:
            raise InstructionParseError(f"a push needs one object and a direction (left/right): {text!r}")
        return [Subgoal("push", names[0], direction=1.0 if d.group(1) == "right" else -1.0)]
    if len(names) == 1:
        if names[0].endswith("plate"):
            raise InstructionParseError(f"the only object named is a plate, which cannot be picked: {text!r}")
        return [Subgoal("pick", names[0])]
    if len(names) % 2:
        raise InstructionParseError(f"{len(names)} objects named in {text!r}: expected pairs of "
                                    f"(object, where to put it)")
    goals = [Subgoal("place", names[i], names[i + 1]) for i in range(0, len(names), 2)]
    for g in goals:
        if g.obj.endswith("plate"):
            raise InstructionParseError(f"{g.obj} is a plate: only cubes are moved ({text!r})")
    return goals


VOCABULARY: tuple[str, ...] = tuple(o.name for o in OBJECTS)  # what the parser names, in label order


def resting_height(name: str) -> float:
    """Height of the object's centre when it rests on the table."""
    return CUBE_HALF if name.endswith("cube") else PLATE_HALF_HEIGHT


@dataclass
class _PlanTask:
    """What ``ScriptedExpert`` reads from a task."""

    subgoals: list[Subgoal]
    family: str


class _PerceivedWorld:
    """The environment interface ``ScriptedExpert`` plans against, backed by perception (object
    positions) and forward kinematics (end effector) instead of a simulator's state."""

    def __init__(self, task: _PlanTask, positions: dict[str, np.ndarray]) -> None:
        self.task = task
        self.positions = positions
        self.ee_pos = np.zeros(3)
        self.ee_rot = np.eye(3)

    def object_position(self, name: str) -> np.ndarray:
        return self.positions[name].copy()

    def ee_position(self) -> np.ndarray:
        return self.ee_pos.copy()

    def ee_rotation(self) -> np.ndarray:
        return self.ee_rot.copy()


# The phases of a subgoal from the one that achieves it on: the cube let go on its target, lifted,
# or being pushed. A repeated instruction then starts the task again (see policy_node).
_FINAL_PHASES = {"place": ("release", "retreat"), "pick": ("lift",), "push": ("push", "retreat")}


@dataclass
class PlannerAction:
    twist: np.ndarray  # (6,)
    gripper: float
    phase: str  # the expert's phase name, or "localise" / "done"
    finishing: bool = False  # the last subgoal is in its final phases (_FINAL_PHASES) or the plan is done


@dataclass
class GroundedPlanner:
    """One instruction's plan. ``observe`` each frame's grounded locations until every object
    has ``localise_frames`` confident sightings, then ``act`` each frame."""

    subgoals: list[Subgoal]
    camera: CameraModel
    forward_kinematics: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # q -> (pos (3,), rot (3, 3))
    localise_frames: int = 3
    min_confidence: float = 0.5
    gripper_max: float = 0.08  # the gripper command before the plan starts (open)
    sightings: dict[str, list[np.ndarray]] = field(default_factory=dict)
    positions: dict[str, np.ndarray] | None = None
    _actions: object = None
    _world: _PerceivedWorld | None = None
    _gripper: float = field(init=False)  # the last gripper command; open until the plan says otherwise

    def __post_init__(self) -> None:
        self._gripper = self.gripper_max

    @property
    def objects(self) -> list[str]:
        names: list[str] = []
        for g in self.subgoals:
            for n in (g.obj, g.target):
                if n and n not in names:
                    names.append(n)
        return names

    @property
    def places(self) -> list[str]:
        """The objects something is put on (located in the model's place role where it has one)."""
        return [g.target for g in self.subgoals if g.target]

    @property
    def localised(self) -> bool:
        return self.positions is not None

    def observe(self, locations: dict[str, tuple[float, float, float]]) -> None:
        """locations: {object name: (row, col, confidence)} of one frame."""
        if self.localised:
            return
        for name in self.objects:
            loc = locations.get(name)
            if loc is None or loc[2] < self.min_confidence:
                continue
            try:
                point = self.camera.backproject(loc[0], loc[1], resting_height(name))
            except ValueError:  # a pixel above the horizon: not a place on the table
                continue
            self.sightings.setdefault(name, []).append(point)
        if all(len(self.sightings.get(n, [])) >= self.localise_frames for n in self.objects):
            self.positions = {n: np.median(np.stack(v), axis=0) for n, v in self.sightings.items()}
            from .expert import ScriptedExpert

            family = "place_two" if len(self.subgoals) > 1 else self.subgoals[0].kind
            self._world = _PerceivedWorld(_PlanTask(list(self.subgoals), family), self.positions)
            self._actions = ScriptedExpert(self._world).actions()  # type: ignore[arg-type]

    def step_locations(self, steps: list[tuple[tuple[float, float, float], ...]]
                       ) -> dict[str, tuple[float, float, float]] | None:
        """Each named object's location from the instruction's own steps (``locate_steps``:
        [(pick, place)] per step): a subgoal's object from its step's pick map, its target from
        its step's place map. One step per subgoal, or two ("pick up A, then put it on B": A from
        the first step, B from the second). None when the steps do not line up with the subgoals
        or the model has no place maps."""
        n, k = len(self.subgoals), len(steps)
        if k not in (n, 2 * n) or any(len(s) < 2 for s in steps):
            return None
        out: dict[str, tuple[float, float, float]] = {}
        for i, g in enumerate(self.subgoals):
            obj_step, target_step = (steps[i], steps[i]) if k == n else (steps[2 * i], steps[2 * i + 1])
            out.setdefault(g.obj, obj_step[0])
            if g.target:
                out.setdefault(g.target, target_step[1])
        return out

    def act(self, q: np.ndarray) -> PlannerAction:
        """The action for arm joint positions ``q`` (7,): zero twist while localising and once the
        plan is done (the gripper keeps its last command)."""
        if self._world is None:
            return PlannerAction(np.zeros(6), self._gripper, "localise")
        self._world.ee_pos, self._world.ee_rot = self.forward_kinematics(np.asarray(q, dtype=float))
        try:
            a = next(self._actions)  # type: ignore[call-overload]
        except StopIteration:
            return PlannerAction(np.zeros(6), self._gripper, "done", finishing=True)
        self._gripper = float(a.gripper)
        last = a.step_index >= len(self.subgoals) - 1
        return PlannerAction(np.asarray(a.twist, dtype=float), self._gripper, a.phase,
                             finishing=last and a.phase in _FINAL_PHASES[self.subgoals[-1].kind])


class RulesPolicy(Policy):
    """``parse_instruction`` + ``GroundedPlanner`` behind the policy interface (the baseline)."""

    name = "rules"

    def __init__(self, session: Any, robot: Any, **_: Any) -> None:
        self.session, self.robot = session, robot
        self.goals: list[Subgoal] = []
        self.planner: GroundedPlanner | None = None

    def reset(self, instruction: str) -> str:
        self.planner = None
        try:
            self.goals = parse_instruction(instruction)
        except InstructionParseError as e:
            self.goals = []
            raise Refusal("unparsed", str(e)) from e
        self.steps = split_steps(instruction)
        return "; ".join(f"{g.kind} {g.obj}" + (f" onto {g.target}" if g.target else "") for g in self.goals)

    def act(self, obs: Observation) -> ActionChunk:
        if not self.goals:
            raise Refusal("no_instruction", "reset the policy with a parsable instruction first")
        if self.planner is None:
            self.planner = GroundedPlanner(self.goals, self.robot.camera_for(obs.image.shape[:2]), self.robot.ee_pose,
                                           gripper_max=self.robot.gripper_open)
        planner = self.planner
        if not planner.localised:
            found = planner.step_locations(self.session.locate_steps(obs.image, self.steps))
            planner.observe(found if found is not None else
                            self.session.locate(obs.image, planner.objects, rivals=VOCABULARY, places=planner.places))
        a = planner.act(np.asarray(obs.joints, dtype=float))
        row = np.concatenate([a.twist, [a.gripper]]).astype(np.float32)  # (7,)
        return ActionChunk(np.repeat(row[None], self.session.horizon, axis=0), phase=a.phase, finishing=a.finishing)
