"""In-process rollouts: a ``policies.Policy`` against the simulator in one process, no DDS, so
a policy change is measured on a hundred episodes in minutes. The loop mirrors policy_node: a
camera frame every ``steps_per_frame`` control steps, the chunk's rows played in between
through the same safety filter (``control.filter_twist``), joint positions read as
joint_states would give them, the camera from camera_info and the camera's pose (TF).

An episode's outcome: the task's success (the simulator's check), whether and why the policy
refused, and how far the hand moved (for instructions that must not move the arm)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..control.joint_stream import JointTargetStream, stream_limits
from ..control.command_router import CommandRouter
from ..control.safety import TwistLimits
from ..data.bag_dataset import task_matches_hold_out
from ..data.joint_state import VelocityTracker, model_state
from ..model.action_space import ActionSpace, check_command_mode
from ..policies.base import EE_TWIST, Observation, Policy, Refusal
from ..policies.robot import RobotInterface
from ..robots.camera import camera_from_info
from ..robots.config import RobotConfig
from ..training.run_dir import RunDir
from .commands import check_joint_trajectory, start_trajectory
from .env import TabletopEnv
from .scene import JOINT_NAMES

SPLITS = ("mixed", "any", "seen", "held_out", "multi_step")
MOVED_M = 0.01  # the hand moved when it went further than this from where it started


@dataclass
class RolloutResult:
    seed: int
    family: str
    instruction: str
    success: bool
    refused: str = ""  # the refusal's reason code ("" = none)
    detail: str = ""  # the refusal's or the plan's account
    moved_m: float = 0.0  # furthest the hand got from its start, m
    gripper_moved: bool = False  # the fingers' opening changed by more than 5 mm
    phase: str = ""  # the policy's last phase
    steps: int = 0  # control steps run
    seconds: float = 0.0  # wall time
    refused_after_s: float | None = None  # simulated seconds until the refusal
    commands: dict[str, int] = field(default_factory=dict)  # SimCommandPath.counts: sent, holds, drops
    frames: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def no_motion(self) -> bool:
        return self.moved_m < MOVED_M and not self.gripper_moved


def sim_robot(env: TabletopEnv, robot: str = "panda", gripper_open: float = 0.08) -> RobotInterface:
    """The robot side's view of the simulated arm: the robot description through Pinocchio and
    the camera from intrinsics and the camera's pose, as camera_info and /tf_static give them."""
    cfg = RobotConfig.load(robot)
    kin = cfg.kinematics()
    pos, quat = env.camera_pose()
    camera = camera_from_info(env.intrinsics().reshape(-1), pos, quat, "simulator camera")
    arm = [n for n in kin.joint_names if n not in cfg.gripper_joints]
    return RobotInterface(kin, arm, camera, (env.height, env.width), cfg.table_z, gripper_open, 0.0)


class SimJointState:
    """The model's state from the simulated joints, built as policy_node builds it from
    joint_states (``data.joint_state.model_state``): arm and finger positions, then, for a model
    with ``action.velocity``, their velocities differenced over the simulator's clock."""

    def __init__(self, velocity: bool) -> None:
        self.tracker = VelocityTracker() if velocity else None

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()

    def __call__(self, env: TabletopEnv) -> np.ndarray:
        pos = np.r_[env.joint_positions(), env.data.qpos[env.ids.finger_qpos]]
        return model_state(pos, np.zeros(0, np.float32), np.arange(len(pos)), env.time, self.tracker)


def run_hold_out(run: Path, default: Sequence[str] = ("target=yellow_plate",)) -> list[str]:
    """A training run's hold-out patterns (its train_config.json), or ``default``."""
    rd = RunDir(run)
    found = rd.read_config().get("data", {}).get("hold_out") if rd.config.is_file() else None
    return list(found or default)


@dataclass(frozen=True)
class SentTrajectory:
    """A one-point JointTrajectory as ``SimCommandPath`` sent it to the simulated arm: what
    policy_node would publish on the joint_trajectory_cmd topic (``_publish_joint_target``)."""

    names: tuple[str, ...]  # joint_names, the robot description's arm joints in its order
    positions: np.ndarray  # (N,) the one point's positions, rad
    time_from_start: float  # s: one control period
    stamp: float  # header stamp: simulation seconds when it was sent


def check_policy_command_mode(policy: Policy, command_mode: str, joint_names: Sequence[str]) -> None:
    """As policy_node's configure: a policy that sends a checkpoint's own actions (the chunk
    policy, whose ``space`` is the checkpoint's ``ActionSpace``) must be in a space
    ``command_mode`` carries, its joints the commanded ``joint_names`` in order; otherwise
    ``ActionSpaceError`` naming both. Policies that emit twists pass (joint mode converts them
    by IK)."""
    space = getattr(policy, "space", None)
    if isinstance(space, ActionSpace):
        check_command_mode(space, command_mode, joint_names)


class SimCommandPath:
    """One chunk row from the policy to the simulated arm, as policy_node sends it and sim_node
    executes it: policy_node's ``control.CommandRouter`` decides (twist filter, IK joint stream,
    holds), then a twist goes to the simulator's servo (``command_twist``) and a joint target to a
    one-point JointTrajectory of one control period (``check_joint_trajectory``,
    ``start_trajectory``, ``command_trajectory``: sim_node's code).

    ``counts``: twists and trajectories sent, holds, and rows held for each router reason
    (``dropped_twist``, ``dropped_joint_target``, ...). ``on_trajectory``: called with every
    JointTrajectory sent (``SentTrajectory``), holds included; the recorder writes them to the bag."""

    def __init__(self, env: TabletopEnv, robot: RobotInterface, mode: str = "twist",
                 limits: TwistLimits = TwistLimits(max_linear_change=0.08, max_angular_change=0.4),
                 on_trajectory: Callable[[SentTrajectory], None] | None = None) -> None:
        self.env, self.robot, self.mode = env, robot, mode
        self.on_trajectory = on_trajectory
        self.names = list(robot.joint_names)
        stream = JointTargetStream(robot.kinematics, self.names, stream_limits(robot.kinematics, self.names,
                                                                                env.control_dt))
        self.router = CommandRouter(mode, stream, limits, (0.0, 0.08))
        self._order = [JOINT_NAMES.index(n) for n in self.names]  # simulator joint order -> robot's
        self.counts: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def measured(self) -> np.ndarray:
        return self.env.joint_positions()[self._order]

    def _joint_target(self, q: np.ndarray) -> None:
        dt = self.env.control_dt
        plan = check_joint_trajectory(self.names, [(q.tolist(), dt)], JOINT_NAMES, self.env.kin.lo, self.env.kin.hi)
        self.env.command_trajectory(start_trajectory(plan, self.env.time, 0.0, self.env.q_target))
        self._count("trajectories")
        if self.on_trajectory is not None:
            self.on_trajectory(SentTrajectory(tuple(self.names), np.array(q, dtype=float), dt, self.env.time))

    def hold(self) -> None:
        """Zero twist, or a trajectory to the measured joint positions."""
        self._count("holds")
        self.router.reset()
        if self.mode == "twist":
            self.env.command_twist(np.zeros(6))
            self._count("twists")
        else:
            self._joint_target(self.measured())

    def send(self, row: np.ndarray, space: str = EE_TWIST, dims: Sequence[str] = ()) -> None:
        """Command one control period of ``row`` (in ``space``), then the gripper."""
        r = self.router.route(np.asarray(row, dtype=float), space, dims, self.measured(), self.env.ee_position(),
                              self.env.control_dt)
        if r.hold is not None:
            self._count(r.hold)
            self.hold()
            return
        if r.twist is not None:
            self.env.command_twist(r.twist)
            self._count("twists")
        else:
            self._joint_target(r.joint_target)
        if r.gripper is not None:
            self.env.command_gripper(r.gripper)


def run_episode(policy: Policy, env: TabletopEnv, robot: RobotInterface, seed: int,
                instruction: str | Callable[[Any], str] | None = None,
                family: str | None = None, max_steps: int = 600, steps_per_frame: int = 2, frames_every: int = 0,
                state: SimJointState | None = None,
                limits: TwistLimits = TwistLimits(max_linear_change=0.08, max_angular_change=0.4),
                command_mode: str = "twist",
                on_trajectory: Callable[[SentTrajectory], None] | None = None) -> RolloutResult:
    """One episode of ``policy`` on the layout and task of ``seed`` (and ``family``), saying
    ``instruction`` (default: the task's own; a callable makes it from the task). Success is
    judged by the task's check. ``state``: the model's state for policies that read it (chunk).
    ``command_mode``: how policy_node would send the commands ('twist' or 'joint_trajectory',
    see ``SimCommandPath``); a chunk policy whose checkpoint's action space that mode cannot carry
    is refused before the episode starts, as policy_node's configure refuses it
    (``check_policy_command_mode``: ActionSpaceError). ``on_trajectory``: sees every
    JointTrajectory sent (``SimCommandPath``)."""
    t_wall = time.perf_counter()
    path = SimCommandPath(env, robot, command_mode, limits, on_trajectory)
    check_policy_command_mode(policy, command_mode, path.names)
    task = env.reset(seed=seed, family=family)
    text = instruction(task) if callable(instruction) else instruction or task.instruction
    res = RolloutResult(seed, task.family, text, False)
    ee0, width0 = env.ee_position(), env.gripper_width()
    dt = env.control_dt
    try:
        res.detail = policy.reset(text)
    except Refusal as r:
        res.refused, res.detail, res.refused_after_s = r.reason, r.detail, 0.0
    step = 0
    if state is not None:
        state.reset()
    while not res.refused and step < max_steps:
        rgb = env.render(segmentation=False).rgb
        if frames_every and (step // steps_per_frame) % frames_every == 0:
            res.frames.append(rgb.copy())
        obs = Observation(rgb, path.measured(), None if state is None else state(env), step * dt)
        try:
            chunk = policy.act(obs)
        except Refusal as r:
            res.refused, res.detail, res.refused_after_s = r.reason, r.detail, round(step * dt, 2)
            break
        res.phase = chunk.phase
        if chunk.phase == "done":
            break
        for k in range(steps_per_frame):
            path.send(chunk.actions[min(k, len(chunk.actions) - 1)], chunk.space, chunk.dims)
            env.step()
            step += 1
            res.moved_m = max(res.moved_m, float(np.linalg.norm(env.ee_position() - ee0)))
    path.hold()
    for _ in range(10):  # let things come to rest before judging
        env.step()
    res.moved_m = max(res.moved_m, float(np.linalg.norm(env.ee_position() - ee0)))
    res.gripper_moved = abs(env.gripper_width() - width0) > 0.005
    res.success = bool(env.success()) and not res.refused
    res.steps = step
    res.commands = dict(path.counts)
    res.seconds = round(time.perf_counter() - t_wall, 2)
    return res


def classify_task(task: dict, hold_out: Sequence[str]) -> tuple[bool, bool]:
    """A task dict (as sim_node publishes it) -> (matches a hold-out pattern, has several steps)."""
    return any(task_matches_hold_out(task, task.get("instruction", ""), p) for p in hold_out), len(task["steps"]) > 1


def select_seeds(first: int, count: int, split: str = "any",
                 hold_out: Sequence[str] = ("target=yellow_plate",)) -> list[int]:
    """``count`` episode seeds from ``first`` upward whose task falls in ``split``: seen
    (single-step, no hold-out pattern), held_out (single-step, matching one), multi_step, any,
    or mixed (seen, held_out and multi_step in turn)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {SPLITS}")
    if split == "any":
        return list(range(first, first + count))
    if split == "mixed":
        parts = [select_seeds(first, (count + 2 - i) // 3, sp, hold_out)
                 for i, sp in enumerate(("seen", "held_out", "multi_step"))]
        return [p[i] for i in range(max(map(len, parts))) for p in parts if i < len(p)][:count]
    seeds: list[int] = []
    with TabletopEnv(render=False) as env:
        for s in range(first, first + 50 * count + 100):
            held, multi = classify_task(env.reset(s).as_dict(), hold_out)
            if split == ("multi_step" if multi else "held_out" if held else "seen"):
                seeds.append(s)
                if len(seeds) == count:
                    return seeds
    raise ValueError(f"fewer than {count} {split} episodes among seeds {first}..{first + 50 * count + 99}")


def write_strip(frames: list[np.ndarray], path: Path, count: int, title: str) -> None:
    """A row of ``count`` frames spread over the episode, titled, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    fig, axes = plt.subplots(1, len(idx), figsize=(2 * len(idx), 2.4), squeeze=False)
    for ax, i in zip(axes[0], idx):
        ax.imshow(frames[i])
        ax.set_axis_off()
        ax.set_title(f"frame {i}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarise(results: Sequence[RolloutResult]) -> dict[str, Any]:
    n = len(results)
    return {"episodes": n, "success": sum(r.success for r in results),
            "success_rate": round(sum(r.success for r in results) / n, 3) if n else None,
            "refused": sum(bool(r.refused) for r in results),
            "no_motion": sum(r.no_motion for r in results),
            "refusals": {k: sum(r.refused == k for r in results) for k in sorted({r.refused for r in results} - {""})}}


def result_row(r: RolloutResult) -> dict[str, Any]:
    d = asdict(r)
    d.pop("frames")
    return d
