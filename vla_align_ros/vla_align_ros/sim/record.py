"""Expert demonstrations written as rosbag2 (mcap or sqlite3) with the ``rosbags`` library.

The simulator is stepped in-process for speed, but every message carries the topic, type and
header stamp (simulation time) it would have had on the ROS graph, so the bag reads like one
``ros2 bag record`` made of a running ``sim_node`` (with /clock). Episodes follow each other
in one bag; each starts with its instruction message.

The expert commands the arm in one of policy_node's command modes: ``twist`` (the servo's
TwistStamped, the original recording) or ``joint_trajectory``: the expert's twist goes through
the in-process command path (``rollout.SimCommandPath``: twist filter, IK joint stream, joint
target filter, a one-point JointTrajectory of one control period) and the bag holds the
JointTrajectory each control step actually sent, which the bag reader turns into ``joint_delta``
actions (target minus measured joints).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from tqdm import tqdm

from .env import TabletopEnv
from .expert import ExpertAction, ScriptedExpert
from .randomisation import check_profile
from .scene import FINGER_NAMES, JOINT_NAMES, OBJECTS
from .topics import BASE_FRAME, CAMERA_FRAME, TOPIC_TYPES, SimTopics

if TYPE_CHECKING:
    from .rollout import SentTrajectory

# policy_node's command modes (control.command_router.COMMAND_MODES, which imports the model
# package and so torch: sim_node, importing this module, does not need it)
COMMAND_MODES = ("twist", "joint_trajectory")


@dataclass
class RecordStats:
    episodes: int
    successes: int
    per_family: dict[str, list[int]]  # family -> [successes, episodes]
    messages: int
    bag_bytes: int
    sim_seconds: float
    commands: dict[str, int] = field(default_factory=dict)  # joint_trajectory mode: SimCommandPath.counts summed


class BagRecorder:
    """Builds rosbags messages from the environment and writes them with sim-time stamps.
    ``command_mode``: the arm command topic the bag holds, ``twist_cmd`` ('twist') or
    ``joint_trajectory_cmd`` ('joint_trajectory'); never both (a bag with both reads as twist)."""

    def __init__(self, out: Path, storage: str = "mcap", topics: SimTopics | None = None,
                 command_mode: str = "twist") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage={storage!r}: must be 'mcap' or 'sqlite3'")
        if command_mode not in COMMAND_MODES:
            raise ValueError(f"command_mode={command_mode!r}: use one of {COMMAND_MODES}")
        skip = "joint_trajectory_cmd" if command_mode == "twist" else "twist_cmd"
        self.ts = get_typestore(Stores.ROS2_KILTED)
        self.topics = topics or SimTopics()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(out, version=9, storage_plugin=plugin)
        self.writer.open()
        self.conns: dict[str, Any] = {}
        for key, msgtype in TOPIC_TYPES.items():
            if key == skip:
                continue  # the expert drives the arm through the other command topic
            self.conns[key] = self.writer.add_connection(getattr(self.topics, key), msgtype, typestore=self.ts)
        self.messages = 0
        m = self.ts.types
        self.M = {name.split("/")[-1]: cls for name, cls in m.items()}

    def close(self) -> None:
        self.writer.close()

    def _write(self, key: str, msg: Any, stamp_ns: int) -> None:
        self.writer.write(self.conns[key], stamp_ns, self.ts.serialize_cdr(msg, TOPIC_TYPES[key]))
        self.messages += 1

    def _header(self, stamp_ns: int, frame: str) -> Any:
        M = self.M
        return M["Header"](stamp=M["Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                           frame_id=frame)

    def _image(self, stamp_ns: int, arr: np.ndarray, encoding: str) -> Any:
        h, w = arr.shape[:2]
        step = w * (3 if encoding == "rgb8" else 1)
        return self.M["Image"](header=self._header(stamp_ns, CAMERA_FRAME), height=h, width=w, encoding=encoding,
                               is_bigendian=0, step=step, data=np.ascontiguousarray(arr).reshape(-1))

    def write_instruction(self, stamp_ns: int, env: TabletopEnv) -> None:
        assert env.task is not None
        self._write("instruction", self.M["String"](data=env.task.instruction), stamp_ns)
        self._write("gt_task", self.M["String"](data=json.dumps(env.task.as_dict())), stamp_ns)
        self.write_camera_pose(stamp_ns, env)

    def write_camera_pose(self, stamp_ns: int, env: TabletopEnv) -> None:
        """The camera's pose on /tf_static (base -> optical frame), once per episode: a randomised
        profile moves the camera between episodes, as a re-mounted camera would."""
        M = self.M
        pos, quat = env.camera_pose()
        tf = M["TransformStamped"](header=self._header(stamp_ns, BASE_FRAME), child_frame_id=CAMERA_FRAME,
                                   transform=M["Transform"](
                                       translation=M["Vector3"](x=float(pos[0]), y=float(pos[1]), z=float(pos[2])),
                                       rotation=M["Quaternion"](x=float(quat[0]), y=float(quat[1]), z=float(quat[2]),
                                                                w=float(quat[3]))))
        self._write("tf_static", M["TFMessage"](transforms=[tf]), stamp_ns)

    def write_state(self, stamp_ns: int, env: TabletopEnv, with_camera: bool = True) -> None:
        M = self.M
        self._write("clock", M["Clock"](clock=M["Time"](sec=stamp_ns // 1_000_000_000,
                                                        nanosec=stamp_ns % 1_000_000_000)), stamp_ns)
        q = np.r_[env.joint_positions(), env.data.qpos[env.ids.finger_qpos]]
        dq = np.r_[env.joint_velocities(), env.data.qvel[env.ids.finger_qpos]]
        self._write("joint_states", M["JointState"](header=self._header(stamp_ns, BASE_FRAME),
                                                    name=list(JOINT_NAMES) + list(FINGER_NAMES),
                                                    position=q.astype(np.float64), velocity=dq.astype(np.float64),
                                                    effort=np.zeros(0, np.float64)), stamp_ns)
        poses = []
        for obj in OBJECTS:
            p, quat = env.object_pose(obj.name)
            poses.append(M["Pose"](position=M["Point"](x=float(p[0]), y=float(p[1]), z=float(p[2])),
                                   orientation=M["Quaternion"](x=float(quat[1]), y=float(quat[2]), z=float(quat[3]),
                                                               w=float(quat[0]))))
        self._write("gt_object_poses", M["PoseArray"](header=self._header(stamp_ns, "world"), poses=poses), stamp_ns)
        if with_camera:
            frame = env.render(segmentation=True)
            self._write("image", self._image(stamp_ns, frame.rgb, "rgb8"), stamp_ns)
            self._write("gt_segmentation", self._image(stamp_ns, frame.labels, "mono8"), stamp_ns)
            self._write("camera_info", self.camera_info(stamp_ns, env), stamp_ns)

    def camera_info(self, stamp_ns: int, env: TabletopEnv) -> Any:
        M = self.M
        k = env.intrinsics()
        p = np.zeros((3, 4))
        p[:, :3] = k
        return M["CameraInfo"](header=self._header(stamp_ns, CAMERA_FRAME), height=env.height, width=env.width,
                               distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1),
                               p=p.reshape(-1), binning_x=0, binning_y=0,
                               roi=M["RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def write_command(self, stamp_ns: int, action: ExpertAction) -> None:
        """The expert's twist on the servo topic, then its gripper command."""
        M = self.M
        t = action.twist
        self._write("twist_cmd", M["TwistStamped"](
            header=self._header(stamp_ns, BASE_FRAME),
            twist=M["Twist"](linear=M["Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
                             angular=M["Vector3"](x=float(t[3]), y=float(t[4]), z=float(t[5])))), stamp_ns)
        self.write_gripper(stamp_ns, action)

    def write_gripper(self, stamp_ns: int, action: ExpertAction) -> None:
        self._write("gripper_cmd", self.M["Float64"](data=float(action.gripper)), stamp_ns)

    def write_trajectory(self, stamp_ns: int, sent: SentTrajectory) -> None:
        """A JointTrajectory as policy_node publishes one (``_publish_joint_target``): header stamp
        now (sim time), no frame, the joint names, one point with positions only, reached
        ``time_from_start`` (one control period) after the stamp."""
        types = self.ts.types
        ns = int(round(sent.time_from_start * 1e9))
        point = types["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.asarray(sent.positions, dtype=np.float64), velocities=np.zeros(0, np.float64),
            accelerations=np.zeros(0, np.float64), effort=np.zeros(0, np.float64),
            time_from_start=types["builtin_interfaces/msg/Duration"](sec=ns // 1_000_000_000,
                                                                     nanosec=ns % 1_000_000_000))
        self._write("joint_trajectory_cmd", types["trajectory_msgs/msg/JointTrajectory"](
            header=self._header(stamp_ns, ""), joint_names=list(sent.names), points=[point]), stamp_ns)

    def write_phase(self, stamp_ns: int, action: ExpertAction) -> None:
        self._write("gt_phase", self.M["String"](data=json.dumps({"phase": action.phase,
                                                                  "step_index": action.step_index})), stamp_ns)

    def write_success(self, stamp_ns: int, ok: bool) -> None:
        self._write("gt_success", self.M["Bool"](data=bool(ok)), stamp_ns)


def record_episodes(out: str | Path, episodes: int, seed: int, families: Sequence[str] | None = None,
                    storage: str = "mcap", image_size: tuple[int, int] = (96, 96), control_hz: float = 20.0,
                    progress: bool = True, overwrite: bool = False, tasks_per_scene: int = 1,
                    randomisation: str = "none", command_mode: str = "twist") -> RecordStats:
    """Run the expert for ``episodes`` episodes (seeds seed, seed+1, ...) and write one bag.
    ``tasks_per_scene`` > 1 records each scene (object layout) with that many different tasks,
    so a model cannot read the task off the layout and has to watch what the arm does.
    ``randomisation`` ('none', 'train', 'unseen') draws each episode's appearance (table tint,
    lights, camera pose, object colour jitter) from that profile; 'none' records today's scene.
    ``command_mode``: 'twist' (the servo topic; the original bags, byte for byte) or
    'joint_trajectory' (the expert's twists sent as policy_node sends them in that mode, through
    ``rollout.SimCommandPath``; the bag holds the JointTrajectory sent each control step,
    stamped with the simulation time, and notes the mode in its metadata)."""
    if tasks_per_scene < 1:
        raise ValueError(f"tasks_per_scene={tasks_per_scene}: must be >= 1")
    if command_mode not in COMMAND_MODES:
        raise ValueError(f"command_mode={command_mode!r}: use one of {COMMAND_MODES}")
    check_profile(randomisation)
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    per_family: dict[str, list[int]] = {}
    successes = 0
    t_offset_ns = 0
    commands: dict[str, int] = {}
    recorder = BagRecorder(out, storage, command_mode=command_mode)
    if randomisation != "none":  # bag metadata only: 'none' bags stay as they always were
        recorder.writer.set_custom_data("vla_align.randomisation", randomisation)
    if command_mode != "twist":  # likewise: twist bags carry no note
        recorder.writer.set_custom_data("vla_align.command_mode", command_mode)
    try:
        with TabletopEnv(image_size=image_size, control_hz=control_hz, randomisation=randomisation) as env:
            path = None
            if command_mode == "joint_trajectory":
                from .rollout import SimCommandPath, sim_robot

                path = SimCommandPath(env, sim_robot(env), command_mode, on_trajectory=lambda sent: (
                    recorder.write_trajectory(t_offset_ns + int(round(sent.stamp * 1e9)), sent)))
            bar = tqdm(range(episodes), desc="record", disable=not progress, dynamic_ncols=True)
            for i in bar:
                family = None if not families else families[i % len(families)]
                if tasks_per_scene == 1:
                    task = env.reset(seed=seed + i, family=family)
                else:
                    task = env.reset(seed=seed + i // tasks_per_scene, family=family,
                                     task_seed=1_000_003 * (seed + 1) + i)
                stamp = lambda: t_offset_ns + int(round(env.time * 1e9))  # noqa: E731
                recorder.write_instruction(stamp(), env)
                recorder.write_state(stamp(), env)
                if path is not None:
                    path.router.reset()
                last_phase = None
                for action in ScriptedExpert(env).actions():
                    if (action.phase, action.step_index) != last_phase:
                        recorder.write_phase(stamp(), action)
                        last_phase = (action.phase, action.step_index)
                    if path is None:
                        recorder.write_command(stamp(), action)
                        env.command_twist(action.twist)
                    else:  # the twist filter, IK stream and one-point trajectory; on_trajectory writes it
                        path.send(np.asarray(action.twist, dtype=float))
                        recorder.write_gripper(stamp(), action)
                    env.command_gripper(action.gripper)
                    env.step()
                    recorder.write_state(stamp(), env)
                if path is not None:
                    for k, v in path.counts.items():
                        commands[k] = commands.get(k, 0) + v
                    path.counts.clear()
                for _ in range(10):
                    env.step()
                ok = env.success()
                recorder.write_success(stamp(), ok)
                successes += ok
                fam = per_family.setdefault(task.family, [0, 0])
                fam[0] += ok
                fam[1] += 1
                t_offset_ns = stamp() + 1_000_000_000  # one quiet second between episodes
                bar.set_postfix(success=f"{successes}/{i + 1}")
    finally:
        recorder.close()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return RecordStats(episodes=episodes, successes=successes, per_family=per_family, messages=recorder.messages,
                       bag_bytes=size, sim_seconds=t_offset_ns / 1e9, commands=commands)
