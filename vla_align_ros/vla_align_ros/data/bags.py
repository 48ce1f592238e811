"""rosbag2 recordings (mcap or sqlite3, from any recorder) -> synchronised episodes.

Only topic names and types matter, and each configured topic's type is checked against the
bag. A folder of ``.mcap`` (or ``.db3``) files without ``metadata.yaml`` (another tool wrote it)
is read file by file. The image stream is the reference clock: every frame is paired with the
nearest joint state and command within ``slop`` seconds by header stamp (a zero stamp, as some
publishers leave it, is replaced by the time the message was logged); frames without a partner
are dropped and counted. Frames come from ``sensor_msgs/Image`` or ``CompressedImage`` (jpeg,
png) on the image topic ``T`` and from ``CompressedImage`` on ``T/compressed`` (image_transport's
name), all into one stream. Joint states are matched by name to the wanted joints
(``JointLayout``: the model's state order), whatever order the driver publishes and whatever
other joints it adds. Episodes start at each instruction message. Actions come from the
recorded twist (+ gripper) commands, or from JointTrajectory commands (target minus measured
position, + gripper), or from joint-state differences when no command topic exists; each
episode carries its ``ActionSpace`` (model/action_space.py). Step labels come from phase markers
when they exist, otherwise from gripper close -> open events. Each episode also carries what
labels a demonstration by itself: the gripper command per frame, the joint names, and the
camera's intrinsics (``camera_info``) and pose (``/tf_static``). ``BagTopics.robot_observable()``
opens only what a real robot records: no ``/ground_truth/*`` topic is read.
"""

from __future__ import annotations

import bisect
import functools
import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..image_conv import ImageError, compressed_to_array, image_to_array
from ..model.action_space import ActionSpace
from ..text_input import split_steps
from .joint_state import joint_arrays


class BagError(ValueError):
    """A recording that cannot be used, with what is wrong and what the bag contains."""


IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
# The message types each BagTopics key accepts (the first is what the simulator records).
TOPIC_TYPES: dict[str, tuple[str, ...]] = {
    "instruction": (STRING,),
    "image": (IMAGE, COMPRESSED),
    "joint_states": ("sensor_msgs/msg/JointState",),
    "twist_cmd": ("geometry_msgs/msg/TwistStamped",),
    "joint_trajectory_cmd": ("trajectory_msgs/msg/JointTrajectory",),
    "gripper_cmd": ("std_msgs/msg/Float64", "std_msgs/msg/Float32"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "tf_static": ("tf2_msgs/msg/TFMessage",),
    "segmentation": (IMAGE,),
    "task": (STRING,),
    "phase": (STRING,),
}
COMPRESSED_SUFFIX = "/compressed"  # image_transport: the compressed stream of image topic T is T/compressed


@dataclass
class BagTopics:
    """The topic name of each stream the reader knows; an empty name is not read."""

    instruction: str = "/instruction"
    image: str = "/camera/image_raw"
    joint_states: str = "/joint_states"
    twist_cmd: str = "/servo_node/delta_twist_cmds"
    # ros2_control's joint_trajectory_controller input (the simulator's SimTopics name too)
    joint_trajectory_cmd: str = "/joint_trajectory_controller/joint_trajectory"
    gripper_cmd: str = "/gripper/command"
    camera_info: str = "/camera/camera_info"
    tf_static: str = "/tf_static"
    segmentation: str = "/ground_truth/segmentation"
    task: str = "/ground_truth/task"
    phase: str = "/ground_truth/phase"

    REQUIRED = ("instruction", "image", "joint_states")
    GROUND_TRUTH = ("segmentation", "task", "phase")  # what only a simulator can record

    def robot_observable(self) -> "BagTopics":
        """The same topics without the simulator's ground truth (those are then never opened)."""
        return BagTopics(**{k: ("" if k in self.GROUND_TRUTH else v) for k, v in vars(self).items()})

    @property
    def opened(self) -> dict[str, str]:
        """{topic name: key} of every topic that is read (an empty name is not), with the image
        topic's image_transport compressed stream ``<image>/compressed``."""
        out = {v: k for k, v in vars(self).items() if isinstance(v, str) and v}
        if self.image and self.image + COMPRESSED_SUFFIX not in out:
            out[self.image + COMPRESSED_SUFFIX] = "image"
        return out

    def with_overrides(self, pairs: Sequence[str]) -> "BagTopics":
        """``["image=/my/cam", "joint_states=/arm/joint_states", "twist_cmd="]`` -> a copy with
        those names (an empty name: that topic is not read). An unknown key or a pair without
        ``=`` raises ValueError listing the keys."""
        keys = list(vars(self))
        changes: dict[str, str] = {}
        for pair in pairs:
            key, sep, name = pair.partition("=")
            key = key.strip()
            if not sep or key not in keys:
                raise ValueError(f"--topic {pair!r}: use KEY=NAME with KEY one of {', '.join(keys)}")
            name = name.strip()
            if name and not name.startswith("/"):
                raise ValueError(f"--topic {pair!r}: a topic name starts with '/'")
            changes[key] = name
        return replace(self, **changes)


@dataclass(frozen=True)
class JointLayout:
    """The joint-state columns training wants, in the model's state order: the arm's joints
    (what a joint command moves) and then the gripper's finger joints; and the robot's base
    frame, the frame of a twist command recorded without one. Columns are found by name in each
    JointState message, so the driver's order and any extra joints do not matter."""

    arm: tuple[str, ...]
    fingers: tuple[str, ...] = ()
    base_frame: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return self.arm + self.fingers

    @classmethod
    def from_robot(cls, robot: Any) -> "JointLayout":
        """A ``RobotConfig`` (or the name / path of one): the description's joints without the
        config's ``gripper_joints`` (the arm, in the description's order), then the gripper
        joints; for the Panda panda_joint1..7, panda_finger_joint1, panda_finger_joint2, the
        9 state values of the shipped model (policy_node's state_joint_names)."""
        from ..robots.config import RobotConfig

        cfg = robot if isinstance(robot, RobotConfig) else RobotConfig.load(robot)
        names = cfg.kinematics().joint_names
        fingers = tuple(cfg.gripper_joints)
        return cls(tuple(n for n in names if n not in fingers), fingers, cfg.base_frame)


class JointColumns:
    """Joint names of a message (JointState, or a JointTrajectory's) -> the wanted columns. The
    index map is built once per distinct name tuple (a driver sends the same names every time),
    so each message costs one dict lookup and one fancy index. ``wanted`` None: the first
    message's names are the wanted order. ``msgtype`` and ``stream`` name the message and the
    stream in errors."""

    def __init__(self, wanted: Sequence[str] | None, topic: str, msgtype: str = "JointState",
                 stream: str = "joint_states") -> None:
        self.wanted: tuple[str, ...] | None = tuple(wanted) if wanted is not None else None
        self.topic, self.msgtype, self.stream = topic, msgtype, stream
        self._index: dict[tuple[str, ...], np.ndarray] = {}

    def index(self, names: tuple[str, ...], n_positions: int) -> np.ndarray:
        """(J,) int64 positions of the wanted joints in a message naming ``names``; BagError when a
        wanted joint is missing or the message has not one name per position."""
        idx = self._index.get(names)
        if idx is not None and n_positions == len(names):
            return idx
        if n_positions != len(names):
            raise BagError(f"{self.topic}: a {self.msgtype} names {len(names)} joints {list(names)} but carries "
                           f"{n_positions} positions; each position needs its joint's name")
        if self.wanted is None:
            self.wanted = names
        col = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.wanted if n not in col]
        if missing:
            raise BagError(f"{self.topic}: joints {missing} are missing from {self.stream} (wanted, in order: "
                           f"{list(self.wanted)}); the bag's {self.msgtype} names {list(names)}")
        idx = np.array([col[n] for n in self.wanted], dtype=np.int64)
        self._index[names] = idx
        return idx

    def __call__(self, names: tuple[str, ...], position: np.ndarray, velocity: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """One message -> (positions (J,), velocities (J,) or (0,) when it carries none for every name)."""
        idx = self.index(names, len(position))
        return position[idx], (velocity[idx] if len(velocity) == len(names) else velocity[:0])


@dataclass(frozen=True)
class CameraCalibration:
    """The camera as the bag records it: ``camera_info.k`` (3, 3) for images of ``hw``, and the
    optical frame's pose in the robot's base frame from ``/tf_static`` (None where it has none)."""

    k: np.ndarray  # (3, 3)
    hw: tuple[int, int]
    frame_id: str
    parent_frame: str = ""  # the root of the /tf_static tree the pose is given in ("" without one)
    translation: np.ndarray | None = None  # (3,)
    quaternion: np.ndarray | None = None  # (4,) [x, y, z, w]


@dataclass
class SyncStats:
    frames: int = 0
    dropped_no_joint_state: int = 0
    dropped_no_command: int = 0
    dropped_before_instruction: int = 0
    episodes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Episode:
    bag: str
    instruction: str
    task: dict[str, Any] | None
    stamps: np.ndarray  # (T,) int64 nanoseconds (header stamps)
    images: np.ndarray  # (T, H, W, 3) uint8
    joints: np.ndarray  # (T, J) positions
    velocities: np.ndarray  # (T, J) as recorded, or position differences where none was (joint_arrays)
    actions: np.ndarray  # (T, A)
    action_space: ActionSpace  # what each column of ``actions`` is: kind, names, units, frame
    labels: np.ndarray | None  # (T, H, W) uint8 segmentation labels
    step_index: np.ndarray  # (T,) int, which instruction step is active
    steps: list[str] = field(default_factory=list)
    gripper: np.ndarray | None = None  # (T,) the gripper command in force at each frame (None: no topic)
    joint_names: list[str] = field(default_factory=list)  # the columns of ``joints`` (the wanted order)
    camera: CameraCalibration | None = None  # None: the bag has no camera_info
    index: int = 0  # the episode's position in its bag (for messages)

    def __len__(self) -> int:
        return len(self.stamps)


def _image_array(msg: Any) -> np.ndarray:
    """Image -> (H, W, C) array (RGB for colour encodings), honouring a padded step."""
    try:
        return image_to_array(msg)
    except ImageError as e:
        raise BagError(str(e)) from e


def _colour_image(msg: Any) -> np.ndarray:
    arr = _image_array(msg)
    if arr.dtype != np.uint8 or arr.shape[2] != 3:
        raise BagError(f"the camera topic must carry colour images (rgb8, bgr8, rgba8, bgra8), got {msg.encoding!r}")
    return arr


_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")


def parse_image_cdr(raw: bytes | memoryview) -> tuple[int, str, int, int, str, int, int, int] | None:
    """The fields of a little-endian CDR ``sensor_msgs/msg/Image`` without building a message:
    (stamp ns, frame_id, height, width, encoding, is_bigendian, step, offset of the pixel bytes),
    or None when the bytes are not laid out that way (the caller then deserialises normally).
    Offsets align to the start of the payload, after the 4-byte encapsulation header."""
    mv = memoryview(raw)
    if len(mv) < 8 or mv[1] != 1:  # CDR_LE only
        return None
    try:
        sec, nsec = _STAMP.unpack_from(mv, 4)
        pos = 12
        (n,) = _U32.unpack_from(mv, pos)
        frame_id = bytes(mv[pos + 4 : pos + 4 + n]).rstrip(b"\0").decode()
        pos = pos + 4 + n
        pos += -(pos - 4) % 4
        height, width = _U32.unpack_from(mv, pos)[0], _U32.unpack_from(mv, pos + 4)[0]
        (n,) = _U32.unpack_from(mv, pos + 8)
        encoding = bytes(mv[pos + 12 : pos + 12 + n]).rstrip(b"\0").decode()
        pos = pos + 12 + n
        bigendian = mv[pos]
        pos += 1
        pos += -(pos - 4) % 4
        step, (n,) = _U32.unpack_from(mv, pos)[0], _U32.unpack_from(mv, pos + 4)
        pos += 8
    except (struct.error, UnicodeDecodeError, IndexError):
        return None
    if pos + n != len(mv) or n != step * height:
        return None
    return sec * 1_000_000_000 + nsec, frame_id, height, width, encoding, bigendian, step, pos


def _skip_string(mv: memoryview, pos: int) -> int:
    """Position after a CDR string at ``pos`` (4-aligned length, then the bytes)."""
    pos += -(pos - 4) % 4
    (n,) = _U32.unpack_from(mv, pos)
    return pos + 4 + n


def _read_f8_array(mv: memoryview, pos: int) -> tuple[np.ndarray, int] | None:
    """A CDR float64 sequence at ``pos`` -> (float32 values, the position after it), or None
    when it does not fit in the bytes."""
    pos += -(pos - 4) % 4
    (n,) = _U32.unpack_from(mv, pos)
    pos += 4
    if n:
        pos += -(pos - 4) % 8
    if pos + 8 * n > len(mv):
        return None
    with np.errstate(over="ignore"):  # a corrupt value past float32's range reads as inf
        return np.frombuffer(mv, dtype="<f8", count=n, offset=pos).astype(np.float32), pos + 8 * n


@functools.lru_cache(maxsize=64)
def _decode_names(blob: bytes, count: int) -> tuple[str, ...]:
    """``count`` CDR strings laid out in ``blob`` (which starts 4-aligned) -> their text; cached,
    since a driver sends the same name list in every message."""
    out, pos = [], 0
    for _ in range(count):
        pos += -pos % 4
        (n,) = _U32.unpack_from(blob, pos)
        out.append(blob[pos + 4 : pos + 4 + n].rstrip(b"\0").decode())
        pos += 4 + n
    return tuple(out)


def parse_joint_state_cdr(raw: bytes | memoryview,
                          ) -> tuple[int, tuple[tuple[str, ...], np.ndarray, np.ndarray]] | None:
    """(stamp ns, (names, positions, velocities)) of a little-endian CDR
    ``sensor_msgs/msg/JointState`` (positions and velocities float32, velocities as recorded:
    possibly empty), or None when the bytes are not laid out that way (the caller deserialises
    normally)."""
    mv = memoryview(raw)
    if len(mv) < 8 or mv[1] != 1:
        return None
    try:
        sec, nsec = _STAMP.unpack_from(mv, 4)
        pos = _skip_string(mv, 12)  # frame_id
        pos += -(pos - 4) % 4
        (count,) = _U32.unpack_from(mv, pos)
        pos += 4
        names_at = pos
        for _ in range(count):
            pos = _skip_string(mv, pos)
        if pos > len(mv):
            return None
        names = _decode_names(bytes(mv[names_at:pos]), count)
        position = _read_f8_array(mv, pos)
        if position is None:
            return None
        velocity = _read_f8_array(mv, position[1])
        if velocity is None:
            return None
        return sec * 1_000_000_000 + nsec, (names, position[0], velocity[0])
    except (struct.error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def cdr_frame_id(raw: bytes | memoryview) -> str | None:
    """The ``header.frame_id`` of a little-endian CDR message that starts with a Header, or None."""
    mv = memoryview(raw)
    try:
        (n,) = _U32.unpack_from(mv, 12)
        if mv[1] != 1 or 16 + n > len(mv):
            return None
        return bytes(mv[16 : 16 + n]).rstrip(b"\0").decode()
    except (struct.error, ValueError, IndexError):
        return None


_SIX = struct.Struct("<6d")


def parse_twist_stamped_cdr(raw: bytes | memoryview) -> tuple[int, tuple[float, ...]] | None:
    """(stamp ns, (vx, vy, vz, wx, wy, wz)) of a little-endian CDR ``geometry_msgs/msg/TwistStamped``."""
    mv = memoryview(raw)
    if len(mv) < 8 or mv[1] != 1:
        return None
    try:
        sec, nsec = _STAMP.unpack_from(mv, 4)
        pos = _skip_string(mv, 12)
        pos += -(pos - 4) % 8
        if pos + 48 != len(mv):
            return None
        return sec * 1_000_000_000 + nsec, _SIX.unpack_from(mv, pos)
    except struct.error:
        return None


class FrameStore:
    """Decoded frames of one topic in one preallocated (N, H, W[, C]) array, filled while the bag
    is read, so each message's buffer is released at once and the pixels are written once.
    Episodes take views of it (a slice when their frames are contiguous, which is the rule)."""

    def __init__(self, topic: str, capacity: int, convert: Any) -> None:
        self.topic, self.capacity, self.convert = topic, max(capacity, 1), convert
        self.arr: np.ndarray | None = None
        self._rows: np.ndarray | None = None  # (N, bytes per frame) view of arr, for add_raw
        self.n = 0
        self._direct: tuple | None = None

    def add(self, msg: Any) -> int:
        """A deserialised Image, converted; the first frame also sets the layout ``add_raw`` takes."""
        a = self.convert(msg)
        key = (msg.encoding, msg.height, msg.width, msg.step)
        slot = self.add_array(a)
        if slot == 0 and key[0] in ("rgb8", "mono8") and key[3] == a.shape[1] * (a.shape[2] if a.ndim == 3 else 1) \
                and a.dtype == np.uint8 and a.size == len(msg.data):
            self._direct = key  # later frames of this exact layout skip the conversion
            self._rows = self.arr.reshape(self.arr.shape[0], -1)
        return slot

    def add_compressed(self, msg: Any) -> int:
        """A deserialised CompressedImage (jpeg, png), decoded to RGB."""
        try:
            return self.add_array(compressed_to_array(msg))
        except ImageError as e:
            raise BagError(f"{self.topic}: {e}") from e

    def add_array(self, a: np.ndarray) -> int:
        """A decoded frame (H, W[, C]) -> its slot; every frame of a topic in a bag has one size."""
        if self.arr is None:
            self.arr = np.empty((self.capacity, *a.shape), dtype=a.dtype)
        elif a.shape != self.arr.shape[1:] or a.dtype != self.arr.dtype:
            raise BagError(f"{self.topic}: frame {self.n} is {a.shape} {a.dtype}, earlier frames "
                           f"{self.arr.shape[1:]} {self.arr.dtype}; one size per topic and bag")
        if self.n == self.arr.shape[0]:  # more messages than the metadata announced
            self.arr = np.concatenate([self.arr, np.empty_like(self.arr)])
            if self._rows is not None:
                self._rows = self.arr.reshape(self.arr.shape[0], -1)
        self.arr[self.n] = a
        self.n += 1
        return self.n - 1

    def add_raw(self, raw: bytes | memoryview) -> tuple[int, int] | None:
        """The fast path: a CDR Image whose layout matches the frames so far goes from the read
        buffer straight into the store. -> (stamp ns, slot), or None (deserialise and ``add``)."""
        if self._direct is None or self.n >= len(self._rows):
            return None
        f = parse_image_cdr(raw)
        if f is None or (f[4], f[2], f[3], f[6]) != self._direct:
            return None
        self._rows[self.n] = np.frombuffer(raw, dtype=np.uint8, count=f[6] * f[2], offset=f[7])
        self.n += 1
        return f[0], self.n - 1

    def take(self, slots: np.ndarray) -> np.ndarray:
        """Frames ``slots`` (int array): a view when they are consecutive, else a copy."""
        assert self.arr is not None
        if len(slots) and np.all(np.diff(slots) == 1):
            return self.arr[int(slots[0]) : int(slots[-1]) + 1]
        return self.arr[slots]


# What each non-image stream keeps of a message: plain values, copied, so that no message (and
# no read buffer it is a view of) outlives its turn in the read loop.
_VALUE: dict[str, Any] = {
    "instruction": lambda m: str(m.data), "task": lambda m: str(m.data), "phase": lambda m: str(m.data),
    "joint_states": lambda m: (tuple(str(n) for n in m.name), np.array(m.position, dtype=np.float32),
                               np.array(m.velocity, dtype=np.float32)),
    "twist_cmd": lambda m: (m.twist.linear.x, m.twist.linear.y, m.twist.linear.z, m.twist.angular.x,
                            m.twist.angular.y, m.twist.angular.z),
    # the first point's positions: where the arm is told to go (a message without points says nothing)
    "joint_trajectory_cmd": lambda m: (tuple(str(n) for n in m.joint_names),
                                       np.array(m.points[0].positions, dtype=np.float64)) if len(m.points) else None,
    "gripper_cmd": lambda m: float(m.data),
    "camera_info": lambda m: (np.array(m.k, dtype=np.float64), (int(m.height), int(m.width)), str(m.header.frame_id)),
    "tf_static": lambda m: [(str(t.header.frame_id), str(t.child_frame_id),
                             np.array([t.transform.translation.x, t.transform.translation.y, t.transform.translation.z]),
                             np.array([t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                       t.transform.rotation.w])) for t in m.transforms],
}


def nearest_index(stamps: np.ndarray, query: np.ndarray, slop: int) -> np.ndarray:
    """For each query stamp the index of the nearest of the sorted ``stamps`` (the earlier one on
    a tie), or -1 when none lies within ``slop``. stamps: (N,) int64; query: (Q,) -> (Q,) int64."""
    if stamps.size == 0:
        return np.full(query.shape, -1, dtype=np.int64)
    i = np.searchsorted(stamps, query, side="left")
    lo = np.clip(i - 1, 0, stamps.size - 1)
    hi = np.clip(i, 0, stamps.size - 1)
    d_lo, d_hi = np.abs(stamps[lo] - query), np.abs(stamps[hi] - query)
    best = np.where(d_lo <= d_hi, lo, hi)
    return np.where(np.minimum(d_lo, d_hi) <= slop, best, -1)


def _last_at_or_before(stamps: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the last stamp <= each query (0 when none): the value in force at that time."""
    return np.maximum(np.searchsorted(stamps, query, side="right") - 1, 0)


def _bag_files(path: Path) -> list[Path]:
    """What to open for ``path``: a rosbag2 folder (with metadata.yaml), a single ``.mcap`` /
    ``.db3`` file, or a folder another tool wrote without metadata.yaml: its ``.mcap`` (else
    ``.db3``) files, in name order. BagError when there is no such bag or nothing to read."""
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    if not path.is_dir() or (path / "metadata.yaml").is_file():
        return [path]
    files = sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    if not files:
        names = sorted(p.name for p in path.iterdir())
        raise BagError(f"{path}: no metadata.yaml and no .mcap or .db3 file, so this is not a rosbag2 recording "
                       f"(files: {names}); a recorder that was killed can leave one behind, `ros2 bag reindex` "
                       f"rebuilds it")
    return files


def _check_topics(path: Path, reader: Any, topics: BagTopics) -> None:
    """BagError, naming the topic, the expected type(s) and the found type, for a configured
    topic of another type; and, listing every topic in the bag, for a required topic that is
    missing or holds no messages (the image counts ``<image>/compressed`` too)."""
    wanted = topics.opened
    listing = "; ".join(f"{c.topic} [{c.msgtype}] x{c.msgcount}" for c in reader.connections) or "no topics"
    for c in reader.connections:
        key = wanted.get(c.topic)
        if key is None:
            continue
        allowed = (COMPRESSED,) if key == "image" and c.topic != topics.image else TOPIC_TYPES[key]
        if c.msgtype not in allowed:
            other = [k for k, types in TOPIC_TYPES.items() if c.msgtype in types and k != key]
            hint = f"; that type is read as {other[0]} (give the topic as --topic {other[0]}={c.topic})" if other else ""
            raise BagError(f"{path}: topic {c.topic} ({key}) carries {c.msgtype}, expected "
                           f"{' or '.join(allowed)}{hint}")
    for key in BagTopics.REQUIRED:
        name = getattr(topics, key)
        names = {name, name + COMPRESSED_SUFFIX} if key == "image" else {name}
        conns = [c for c in reader.connections if c.topic in names]
        also = f" (nor {name}{COMPRESSED_SUFFIX})" if key == "image" else ""
        if not conns:
            raise BagError(f"{path}: required topic {name} ({key}) is missing{also}; the bag contains: {listing}")
        if sum(c.msgcount for c in conns) == 0:
            raise BagError(f"{path}: required topic {name} ({key}) has no messages; the bag contains: {listing}")


@dataclass
class _BagRead:
    """What reading one bag gives: the value streams [(stamp ns, value)] by key, the decoded
    frames, the joint-state columns' names and the twist command's frame."""

    streams: dict[str, list[tuple[int, Any]]]
    stores: dict[str, FrameStore]
    joint_names: list[str]
    twist_frame: str


def _read_bag(p: Path, topics: BagTopics, joints: JointLayout | None) -> _BagRead:
    """One bag's messages of the configured topics -> streams (types checked first). Joint
    states are reduced to the wanted columns as they are read; a zero header stamp takes the
    time the message was logged."""
    from rosbags.highlevel import AnyReader

    files = _bag_files(p)
    try:
        reader_cm = AnyReader(files)
        reader = reader_cm.__enter__()
    except Exception as e:  # noqa: BLE001 - rosbags raises several types for broken files
        raise BagError(f"{p}: cannot read the bag ({type(e).__name__}: {e}); it may be truncated, or written "
                       f"in a form rosbags cannot open") from e
    wanted = topics.opened
    columns = JointColumns(joints.names if joints is not None else None, topics.joint_states)
    twist_frame: list[str] = []
    streams: dict[str, list[tuple[int, Any]]] = {}
    try:
        _check_topics(p, reader, topics)
        conns = [c for c in reader.connections if c.topic in wanted]
        key_of = {(id(c.owner), c.id): wanted[c.topic] for c in conns}  # one bag may be several files
        for key in key_of.values():
            streams.setdefault(key, [])
        counts = {key: sum(c.msgcount for c in conns if wanted[c.topic] == key) for key in ("image", "segmentation")}
        stores = {"image": FrameStore(topics.image, counts["image"], _colour_image),
                  "segmentation": FrameStore(topics.segmentation, counts["segmentation"],
                                             lambda m: _image_array(m)[..., 0])}

        def joint_state_fast(raw: bytes | memoryview) -> tuple[int, Any] | None:
            hit = parse_joint_state_cdr(raw)
            return None if hit is None else (hit[0], columns(*hit[1]))

        def twist_fast(raw: bytes | memoryview) -> tuple[int, Any] | None:
            hit = parse_twist_stamped_cdr(raw)
            if hit is not None and not twist_frame:
                twist_frame.append(cdr_frame_id(raw) or "")
            return hit

        def twist_slow(m: Any) -> tuple[float, ...]:
            if not twist_frame:
                twist_frame.append(str(m.header.frame_id))
            return _VALUE["twist_cmd"](m)

        keep: dict[str, Any] = {**_VALUE, "joint_states": lambda m: columns(*_VALUE["joint_states"](m)),
                                "twist_cmd": twist_slow}
        route: dict[tuple[int, int], tuple[Any, Any]] = {}  # per connection: where its values go, what is kept
        fast: dict[tuple[int, int], Any] = {}  # the hot types read straight from CDR (rosbags when that declines)
        for c in conns:
            cid = (id(c.owner), c.id)
            key = key_of[cid]
            if key in stores:
                store = stores[key]
                route[cid] = (streams[key].append, store.add_compressed if c.msgtype == COMPRESSED else store.add)
                if c.msgtype == IMAGE:
                    fast[cid] = store.add_raw
            else:
                route[cid] = (streams[key].append, keep[key])
            if key == "joint_states":
                fast[cid] = joint_state_fast
            elif key == "twist_cmd":
                fast[cid] = twist_fast
        deserialize = reader.deserialize
        for conn, log_ns, raw in reader.messages(connections=conns):
            cid = (id(conn.owner), conn.id)
            reader_fn = fast.get(cid)
            if reader_fn is not None:
                hit = reader_fn(raw)
                if hit is not None:
                    route[cid][0]((hit[0] or int(log_ns), hit[1]))
                    continue
            msg = deserialize(raw, conn.msgtype)
            header = getattr(msg, "header", None)
            t = 0 if header is None else header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            append, keep_fn = route[cid]
            value = keep_fn(msg)
            if value is not None:
                append((t or int(log_ns), value))
    except BagError as e:
        raise e if str(e).startswith(str(p)) else BagError(f"{p}: {e}") from e
    except Exception as e:  # noqa: BLE001
        raise BagError(f"{p}: reading failed part-way ({type(e).__name__}: {e}); the bag may be truncated") from e
    finally:
        reader_cm.__exit__(None, None, None)
    return _BagRead({k: v for k, v in streams.items() if v}, stores, list(columns.wanted or ()),
                    twist_frame[0] if twist_frame else "")


def read_episodes(paths: Sequence[str | Path], topics: BagTopics | None = None, slop: float = 0.02,
                  joints: JointLayout | None = None) -> tuple[list[Episode], SyncStats]:
    """Read every bag and return its synchronised episodes. ``joints``: the wanted joint-state
    columns in order (``JointLayout.from_robot``); None takes each bag's first JointState names."""
    topics = topics or BagTopics()
    named: dict[str, str] = {}
    for key, name in vars(topics).items():
        if name and named.setdefault(name, key) != key:
            raise BagError(f"topics {named[name]} and {key} both name {name}; each stream needs its own topic")
    stats = SyncStats()
    episodes: list[Episode] = []
    for p in map(Path, paths):
        got = _read_bag(p, topics, joints)
        if "image" not in got.streams:  # the index promised frames, none could be read (a corrupt file)
            raise BagError(f"{p}: no {topics.image} message could be read; the bag may be corrupt")
        try:
            episodes.extend(_episodes_from_streams(str(p), got, topics, joints, int(round(slop * 1e9)), stats))
        except BagError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:  # e.g. a garbled task JSON
            raise BagError(f"{p}: malformed message contents ({type(e).__name__}: {e}); the bag may be corrupt") from e
    stats.episodes = len(episodes)
    if not episodes:
        raise BagError(f"no usable episodes in {[str(p) for p in paths]} (sync stats: {stats.as_dict()})")
    return episodes, stats


def _calibration(camera_infos: list[tuple[int, Any]], transforms: list[tuple[int, Any]], t0: int,
                 ) -> CameraCalibration | None:
    """The camera_info in force at ``t0`` (the last before it, else the first), with the pose of
    its frame in the tree ``/tf_static`` has built by then (None where that tree lacks it)."""
    if not camera_infos:
        return None
    from ..robots.camera import chain_to_root

    # both lists are sorted by stamp: bisect for what is in force at t0
    n_info = bisect.bisect_right(camera_infos, t0, key=lambda x: x[0])
    k, hw, frame = camera_infos[max(n_info - 1, 0)][1]
    edges: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    # static transforms accumulate; a later one for the same child replaces it
    n_tf = bisect.bisect_right(transforms, t0, key=lambda x: x[0])
    for _, msg in transforms[: max(n_tf, 1)]:
        for parent, child, tr, q in msg:
            edges[child] = (parent, tr, q)
    root, tr, q = chain_to_root(edges, frame)
    k = np.asarray(k, dtype=np.float64)
    return CameraCalibration(k=k.reshape(3, 3) if k.size == 9 else np.full((3, 3), np.nan), hw=hw, frame_id=frame,
                             parent_frame=root, translation=tr, quaternion=q)


def _trajectory_targets(values: list[tuple[tuple[str, ...], np.ndarray]], arm: Sequence[str], topic: str,
                        ) -> np.ndarray:
    """JointTrajectory first points [(joint_names, positions)] -> (N, A) targets of the ``arm``
    joints in that order, matched by name as joint states are (``JointColumns``)."""
    columns = JointColumns(arm, topic, "JointTrajectory", "the JointTrajectory commands")
    out = np.empty((len(values), len(arm)), dtype=np.float64)
    for i, (names, pos) in enumerate(values):
        out[i] = pos[columns.index(names, len(pos))]
    return out


def _episodes_from_streams(bag: str, got: _BagRead, topics: BagTopics, joints: JointLayout | None, slop: int,
                           stats: SyncStats) -> list[Episode]:
    """Vectorised synchronisation: every stream becomes sorted stamp and value arrays once; each
    frame then finds its partners with ``nearest_index``. Actions, in this order of preference:
    twist commands (+ the gripper command in force), JointTrajectory targets minus the measured
    arm positions (+ gripper), the next frame's joint positions minus this frame's (+ gripper)."""
    s, stores, joint_names = got.streams, got.stores, got.joint_names
    for v in s.values():
        v.sort(key=lambda x: x[0])

    def stamps(key: str) -> np.ndarray:
        return np.fromiter((t for t, _ in s.get(key, [])), dtype=np.int64)

    instr = s.get("instruction", [])
    img_t = stamps("image")
    img_slot = np.fromiter((slot for _, slot in s["image"]), dtype=np.int64)
    js_t = stamps("joint_states")
    js_q, js_dq = joint_arrays(js_t, [v for _, v in s.get("joint_states", [])])
    twists, tw_t = s.get("twist_cmd", []), stamps("twist_cmd")
    tw_v = np.array([v for _, v in twists], dtype=np.float64).reshape(-1, 6)
    grips, grip_t = s.get("gripper_cmd", []), stamps("gripper_cmd")
    grip_v = np.array([v for _, v in grips], dtype=np.float64)
    trajs, traj_t = s.get("joint_trajectory_cmd", []), stamps("joint_trajectory_cmd")
    # the commanded joints: the layout's arm, else (no layout) those the first trajectory names
    arm = list(joints.arm) if joints is not None else (list(trajs[0][1][0]) if trajs else list(joint_names))
    fingers = [n for n in joints.fingers] if joints is not None else []
    missing = [n for n in arm if n not in joint_names]
    if missing:
        raise BagError(f"{bag}: the commanded joints {missing} are not in {topics.joint_states} ({joint_names})")
    arm_cols = [joint_names.index(n) for n in arm]
    finger_cols = [joint_names.index(n) for n in fingers]
    targets = _trajectory_targets([v for _, v in trajs], arm, topics.joint_trajectory_cmd) \
        if trajs and not twists else None  # (N, A)
    if twists:
        space = ActionSpace.ee_twist_gripper(got.twist_frame or (joints.base_frame if joints is not None else ""))
    elif targets is not None:
        space = ActionSpace.joint_delta(arm + (["gripper"] if grips else []),
                                        ["rad"] * len(arm) + (["command"] if grips else []))
    else:  # no command: the fingers' own motion stands for the gripper when no gripper command was recorded
        names = arm + ([] if grips else fingers)
        space = ActionSpace.joint_delta(names + (["gripper"] if grips else []),
                                        ["rad"] * len(arm) + ([] if grips else ["m"] * len(fingers))
                                        + (["command"] if grips else []))
    seg, seg_t = s.get("segmentation", []), stamps("segmentation")
    seg_slot = np.fromiter((slot for _, slot in seg), dtype=np.int64)
    tasks = s.get("task", [])
    phases, ph_t = s.get("phase", []), stamps("phase")
    out: list[Episode] = []
    for k, (t0, imsg) in enumerate(instr):
        t1 = instr[k + 1][0] if k + 1 < len(instr) else 2**63 - 1
        task = next((json.loads(v) for t, v in tasks if abs(t - t0) <= slop), None)
        a, b = np.searchsorted(img_t, [t0, t1], side="left")
        if k == 0:
            stats.dropped_before_instruction += int(a)
        t = img_t[a:b]
        stats.frames += len(t)
        j = nearest_index(js_t, t, slop)
        keep = j >= 0
        stats.dropped_no_joint_state += int((~keep).sum())
        c = np.full(len(t), -1, dtype=np.int64)
        if twists:
            c0, c1 = np.searchsorted(tw_t, [t0, t1], side="left")
            last_cmd = tw_t[c1 - 1] if c1 > c0 else -1
            c = nearest_index(tw_t, t, slop)
            gap = keep & (c < 0) & (t < last_cmd)  # a gap in the commands mid-episode
            stats.dropped_no_command += int(gap.sum())
            keep &= ~gap
        rows = np.flatnonzero(keep)
        if len(rows) < 2:
            continue
        t, j, c = t[rows], j[rows], c[rows]
        images = stores["image"].take(img_slot[a + rows])
        joints_t, velocities = js_q[j], js_dq[j]  # (T, J) each
        grip = grip_v[_last_at_or_before(grip_t, t)] if grips else None  # (T,) the command in force
        g_col = [grip[:, None]] if grip is not None else []
        if twists:
            # The final frame after the last command has none: the arm is told to stand still.
            lin_ang = np.where((c >= 0)[:, None], tw_v[np.maximum(c, 0)], 0.0)  # (T, 6)
            g = grip if grip is not None else np.zeros(len(t))
            actions = np.concatenate([lin_ang, g[:, None]], axis=1).astype(np.float32)
        elif targets is not None:
            # the target in force at each frame (sent at or before it) minus where the arm is; none yet: stay
            ci = np.searchsorted(traj_t, t, side="right") - 1  # (T,)
            measured = joints_t[:, arm_cols].astype(np.float64)  # (T, A)
            delta = np.where((ci >= 0)[:, None], targets[np.maximum(ci, 0)] - measured, 0.0)
            actions = np.concatenate([delta] + g_col, axis=1).astype(np.float32)
        else:
            cols = arm_cols + ([] if grips else finger_cols)
            q = joints_t[:, cols]
            actions = np.concatenate([np.diff(q, axis=0, append=q[-1:])] + g_col, axis=1).astype(np.float32)
        labels = None
        if seg:
            idx = nearest_index(seg_t, t, slop)
            if (idx >= 0).all():
                labels = stores["segmentation"].take(seg_slot[idx])
        steps = list(task["steps"]) if task else split_steps(imsg)
        p0, p1 = np.searchsorted(ph_t, [t0, t1], side="left")
        step_index = _step_labels(t, ph_t[p0:p1], [m for _, m in phases[p0:p1]], grip, len(steps))
        out.append(Episode(bag=bag, instruction=imsg, task=task, stamps=t.astype(np.int64), images=images,
                           joints=joints_t, velocities=velocities, actions=actions, action_space=space,
                           labels=labels, step_index=step_index, steps=steps,
                           gripper=None if grip is None else grip.astype(np.float32), joint_names=list(joint_names),
                           camera=_calibration(s.get("camera_info", []), s.get("tf_static", []), int(t0)),
                           index=k))
    return out


def _step_labels(stamps: np.ndarray, phase_t: np.ndarray, phases: list[Any], grip: np.ndarray | None,
                 n_steps: int) -> np.ndarray:
    """Active step per frame: from phase markers ({"step_index": k}) when present, otherwise a
    new step begins after each gripper release (close -> open) in the gripper command ``grip``
    (T,) in force at each frame (None: no gripper topic, one step)."""
    if phases:
        idx = np.array([json.loads(v).get("step_index", 0) for v in phases], dtype=np.int64)
        return idx[_last_at_or_before(phase_t, stamps)]
    if grip is None or n_steps <= 1:
        return np.zeros(len(stamps), dtype=np.int64)
    closed = grip < 0.5 * float(grip.max() if grip.max() > 0 else 1.0)
    step, out, was_closed = 0, [], False
    for c in closed:
        if was_closed and not c:
            step = min(step + 1, n_steps - 1)
        out.append(step)
        was_closed = bool(c)
    return np.array(out, dtype=np.int64)


def action_chunks(actions: np.ndarray, horizon: int) -> np.ndarray:
    """(T, A) -> (T, H, A): actions t..t+H-1, the last action repeated past the episode end."""
    t = len(actions)
    idx = np.minimum(np.arange(t)[:, None] + np.arange(horizon)[None, :], t - 1)
    return actions[idx]
