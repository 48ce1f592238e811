"""The action space a checkpoint was trained on, taken from the recording: its kind, each
dimension's name and unit, and the frame the values are in. Training writes it into the
checkpoint's metadata; a node that sends the model's actions to an arm checks it against its
command mode before the first command (``check_command_mode``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

EE_TWIST_GRIPPER = "ee_twist_gripper"  # [vx vy vz wx wy wz] in the base frame, then the gripper command
JOINT_DELTA = "joint_delta"  # per joint: commanded target minus measured position (rad), then optionally "gripper"
KINDS = (EE_TWIST_GRIPPER, JOINT_DELTA)

# which action spaces each command mode of policy_node can carry to the arm
COMMAND_MODE_KINDS = {"twist": (EE_TWIST_GRIPPER,), "joint_trajectory": (JOINT_DELTA,)}

_TWIST_DIMS = (("vx", "m/s"), ("vy", "m/s"), ("vz", "m/s"), ("wx", "rad/s"), ("wy", "rad/s"), ("wz", "rad/s"))


class ActionSpaceError(ValueError):
    """A checkpoint's action space that does not fit where its actions would go."""


@dataclass(frozen=True)
class ActionSpace:
    kind: str
    names: tuple[str, ...]  # one per action dimension, in order
    units: tuple[str, ...]  # one per action dimension
    frame: str  # the base frame of a twist; "joint" for joint space

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ActionSpaceError(f"unknown action space kind {self.kind!r}; known: {list(KINDS)}")
        if len(self.names) != len(self.units):
            raise ActionSpaceError(f"action space {self.kind}: {len(self.names)} names but {len(self.units)} units")

    @property
    def dim(self) -> int:
        return len(self.names)

    @classmethod
    def ee_twist_gripper(cls, base_frame: str, gripper_unit: str = "command") -> "ActionSpace":
        return cls(EE_TWIST_GRIPPER, tuple(n for n, _ in _TWIST_DIMS) + ("gripper",),
                   tuple(u for _, u in _TWIST_DIMS) + (gripper_unit,), base_frame)

    @classmethod
    def joint_delta(cls, joint_names: Sequence[str], units: Sequence[str] | None = None) -> "ActionSpace":
        names = tuple(str(n) for n in joint_names)
        return cls(JOINT_DELTA, names, tuple(units) if units is not None else tuple("rad" for _ in names),
                   "joint")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "frame": self.frame,
                "dims": [{"name": n, "unit": u} for n, u in zip(self.names, self.units)]}

    @classmethod
    def from_metadata(cls, value: Any) -> "ActionSpace":
        """A checkpoint's ``metadata["action_space"]``: the dict ``to_dict`` writes. Checkpoints
        written before the space was recorded hold the bare string ``"ee_twist_gripper"``;
        those were all trained on twist commands in the simulator's ``world`` frame."""
        if isinstance(value, str):
            if value != EE_TWIST_GRIPPER:
                raise ActionSpaceError(f"checkpoint action space {value!r} has no dimensions recorded; "
                                       f"retrain it so the space is taken from the data")
            return cls.ee_twist_gripper("world")
        if not isinstance(value, dict) or "kind" not in value or "dims" not in value:
            raise ActionSpaceError(f"malformed action space in the checkpoint metadata: {value!r}")
        dims = value["dims"]
        return cls(str(value["kind"]), tuple(str(d["name"]) for d in dims), tuple(str(d["unit"]) for d in dims),
                   str(value.get("frame", "")))

    def describe(self) -> str:
        return f"{self.kind} [{', '.join(self.names)}] in {self.frame!r}"


def check_command_mode(space: ActionSpace, command_mode: str, joint_names: Sequence[str] = ()) -> None:
    """Raise ActionSpaceError, naming both, when ``space`` cannot be sent in ``command_mode``; for
    joint space the checkpoint's joints must also be the node's ``joint_names`` in order."""
    allowed = COMMAND_MODE_KINDS.get(command_mode)
    if allowed is None:
        raise ActionSpaceError(f"command_mode={command_mode!r}: use one of {sorted(COMMAND_MODE_KINDS)}")
    if space.kind not in allowed:
        fit = [m for m, kinds in COMMAND_MODE_KINDS.items() if space.kind in kinds]
        hint = f"; use command_mode={fit[0]!r}" if fit else ""
        raise ActionSpaceError(f"the checkpoint was trained on {space.describe()}, which command_mode="
                               f"{command_mode!r} cannot send (it carries {', '.join(allowed)}){hint}")
    joints = [n for n in space.names if n != "gripper"]
    if space.kind == JOINT_DELTA and joints != list(joint_names):
        raise ActionSpaceError(f"the checkpoint's joints {joints} are not the node's joint_names "
                               f"{list(joint_names)}")


def checkpoint_action_space(source: Any) -> ActionSpace:
    """The action space a checkpoint was trained on, from any of: a checkpoint folder (the one
    holding ``config.json``), a run folder (its ``checkpoint/``), the ``config.json`` path, the
    parsed ``config.json`` dict, or its ``metadata`` dict. Checkpoints written before the space
    was recorded carry the bare string ``"ee_twist_gripper"`` (``from_metadata``)."""
    import json
    from pathlib import Path

    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir() and not (p / "config.json").is_file() and (p / "checkpoint" / "config.json").is_file():
            p = p / "checkpoint"
        if p.is_dir():
            p = p / "config.json"
        if not p.is_file():
            raise ActionSpaceError(f"{p}: no checkpoint config.json to read the action space from")
        source = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(source, dict):
        raise ActionSpaceError(f"cannot read an action space from {type(source).__name__}")
    meta = source.get("metadata", source) if "action_space" not in source else source
    if "action_space" not in meta:
        raise ActionSpaceError(f"the checkpoint metadata has no action_space (keys: {sorted(meta)})")
    return ActionSpace.from_metadata(meta["action_space"])
