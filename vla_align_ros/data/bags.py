"""rosbag2 recordings (mcap or sqlite3, from any recorder) -> synchronised episodes.

Only topic names and types matter. The image stream is the reference clock: every frame is
paired with the nearest joint state and command within ``slop`` seconds by header stamp;
frames without a partner are dropped and counted. Episodes start at each instruction message.
Actions come from the recorded twist (+ gripper) commands, or from joint-state differences
when no command topic exists. Step labels come from phase markers when they exist, otherwise
from gripper close -> open events. Each episode also carries what labels a demonstration by
itself: the gripper command per frame, the joint names, and the camera's intrinsics
(``camera_info``) and pose (``/tf_static``). ``BagTopics.robot_observable()`` opens only what a
real robot records: no ``/ground_truth/*`` topic is read.
"""

from __future__ import annotations

import bisect
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..image_conv import ImageError, image_to_array
from ..text_input import split_steps
from .joint_state import joint_arrays


class BagError(ValueError):
    """A recording that cannot be used, with what is wrong and what the bag contains."""


@dataclass
class BagTopics:
    instruction: str = "/instruction"
    image: str = "/camera/image_raw"
    joint_states: str = "/joint_states"
    twist_cmd: str = "/servo_node/delta_twist_cmds"
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
        """{topic name: key} of every topic that is read (an empty name is not)."""
        return {v: k for k, v in vars(self).items() if isinstance(v, str) and v}


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
    action_space: str  # "ee_twist_gripper" | "joint_delta"
    labels: np.ndarray | None  # (T, H, W) uint8 segmentation labels
    step_index: np.ndarray  # (T,) int, which instruction step is active
    steps: list[str] = field(default_factory=list)
    gripper: np.ndarray | None = None  # (T,) the gripper command in force at each frame (None: no topic)
    joint_names: list[str] = field(default_factory=list)  # the columns of ``joints``, as the driver names them
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


def parse_joint_state_cdr(raw: bytes | memoryview) -> tuple[int, tuple[np.ndarray, np.ndarray]] | None:
    """(stamp ns, (positions, velocities) float32) of a little-endian CDR
    ``sensor_msgs/msg/JointState`` (velocities as recorded: possibly empty), or None when the bytes
    are not laid out that way (the caller deserialises normally)."""
    mv = memoryview(raw)
    if len(mv) < 8 or mv[1] != 1:
        return None
    try:
        sec, nsec = _STAMP.unpack_from(mv, 4)
        pos = _skip_string(mv, 12)  # frame_id
        pos += -(pos - 4) % 4
        (count,) = _U32.unpack_from(mv, pos)
        pos += 4
        for _ in range(count):
            pos = _skip_string(mv, pos)
        position = _read_f8_array(mv, pos)
        if position is None:
            return None
        velocity = _read_f8_array(mv, position[1])
        if velocity is None:
            return None
        return sec * 1_000_000_000 + nsec, (position[0], velocity[0])
    except (struct.error, ValueError):
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


# Readers of the hot message types straight from CDR bytes: (stamp ns, the kept value) or None.
_FAST_VALUE: dict[tuple[str, str], Any] = {
    ("joint_states", "sensor_msgs/msg/JointState"): parse_joint_state_cdr,
    ("twist_cmd", "geometry_msgs/msg/TwistStamped"): parse_twist_stamped_cdr,
}


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
        key = (msg.encoding, msg.height, msg.width, msg.step)
        a = self.convert(msg)
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
        if self.n == 0 and key[0] in ("rgb8", "mono8") and key[3] == a.shape[1] * (a.shape[2] if a.ndim == 3 else 1) \
                and a.dtype == np.uint8 and a.size == len(msg.data):
            self._direct = key  # later frames of this exact layout skip the conversion
            self._rows = self.arr.reshape(self.arr.shape[0], -1)
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
    "joint_states": lambda m: (np.array(m.position, dtype=np.float32), np.array(m.velocity, dtype=np.float32)),
    "twist_cmd": lambda m: (m.twist.linear.x, m.twist.linear.y, m.twist.linear.z, m.twist.angular.x,
                            m.twist.angular.y, m.twist.angular.z),
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


def _check_path(path: Path) -> None:
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        files = sorted(p.name for p in path.iterdir())
        raise BagError(f"{path}: no metadata.yaml, so this is not a complete rosbag2 recording (files: {files}); "
                       f"a recorder that was killed can leave one behind, `ros2 bag reindex` rebuilds it")


def _check_topics(path: Path, reader: Any, topics: BagTopics) -> None:
    present = {c.topic: c for c in reader.connections}
    listing = "; ".join(f"{c.topic} [{c.msgtype}] x{c.msgcount}" for c in reader.connections) or "no topics"
    for key in BagTopics.REQUIRED:
        name = getattr(topics, key)
        if name not in present:
            raise BagError(f"{path}: required topic {name} ({key}) is missing; the bag contains: {listing}")
        if present[name].msgcount == 0:
            raise BagError(f"{path}: required topic {name} ({key}) has no messages; the bag contains: {listing}")


def read_episodes(paths: Sequence[str | Path], topics: BagTopics | None = None, slop: float = 0.02,
                  ) -> tuple[list[Episode], SyncStats]:
    """Read every bag and return its synchronised episodes."""
    from rosbags.highlevel import AnyReader

    topics = topics or BagTopics()
    stats = SyncStats()
    episodes: list[Episode] = []
    wanted = topics.opened
    for p in map(Path, paths):
        _check_path(p)
        streams: dict[str, list[tuple[int, Any]]] = {}
        try:
            reader_cm = AnyReader([p])
            reader = reader_cm.__enter__()
        except Exception as e:  # noqa: BLE001 - rosbags raises several types for broken files
            raise BagError(f"{p}: cannot read the bag ({type(e).__name__}: {e}); it may be truncated") from e
        try:
            _check_topics(p, reader, topics)
            conns = [c for c in reader.connections if c.topic in wanted]
            key_of = {c.id: wanted[c.topic] for c in conns}
            for key in key_of.values():
                streams.setdefault(key, [])
            counts = {key: sum(c.msgcount for c in conns if wanted[c.topic] == key) for key in ("image", "segmentation")}
            stores = {"image": FrameStore(topics.image, counts["image"], _colour_image),
                      "segmentation": FrameStore(topics.segmentation, counts["segmentation"],
                                                 lambda m: _image_array(m)[..., 0])}
            # per connection: where its messages go and what is kept of each
            route = {c.id: (streams[key_of[c.id]].append, stores[key_of[c.id]].add if key_of[c.id] in stores
                            else _VALUE[key_of[c.id]]) for c in conns}
            deserialize = reader.deserialize
            # the hot types are read straight from their CDR bytes (rosbags when that declines)
            fast = {c.id: stores[key_of[c.id]].add_raw for c in conns
                    if key_of[c.id] in stores and c.msgtype == "sensor_msgs/msg/Image"}
            fast.update({c.id: _FAST_VALUE[(key_of[c.id], c.msgtype)] for c in conns
                         if (key_of[c.id], c.msgtype) in _FAST_VALUE})
            names = _joint_names(reader, [c for c in conns if key_of[c.id] == "joint_states"])
            for conn, log_ns, raw in reader.messages(connections=conns):
                reader_fn = fast.get(conn.id)
                if reader_fn is not None:
                    hit = reader_fn(raw)
                    if hit is not None:
                        route[conn.id][0](hit)
                        continue
                msg = deserialize(raw, conn.msgtype)
                header = getattr(msg, "header", None)
                t = int(log_ns) if header is None else header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
                append, keep = route[conn.id]
                append((t, keep(msg)))
        except BagError:
            raise
        except Exception as e:  # noqa: BLE001
            raise BagError(f"{p}: reading failed part-way ({type(e).__name__}: {e}); the bag may be truncated") from e
        finally:
            reader_cm.__exit__(None, None, None)
        streams = {k: v for k, v in streams.items() if v}
        if "image" not in streams:  # the index promised frames, none could be read (a corrupt file)
            raise BagError(f"{p}: no {topics.image} message could be read; the bag may be corrupt")
        streams["_stores"] = stores  # type: ignore[assignment]
        streams["_joint_names"] = names  # type: ignore[assignment]
        try:
            episodes.extend(_episodes_from_streams(str(p), streams, int(round(slop * 1e9)), stats))
        except BagError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:  # e.g. a garbled task JSON
            raise BagError(f"{p}: malformed message contents ({type(e).__name__}: {e}); the bag may be corrupt") from e
    stats.episodes = len(episodes)
    if not episodes:
        raise BagError(f"no usable episodes in {[str(p) for p in paths]} (sync stats: {stats.as_dict()})")
    return episodes, stats


def _joint_names(reader: Any, conns: list[Any]) -> list[str]:
    """The joint names of the first JointState message (the columns of every later one)."""
    for conn, _, raw in reader.messages(connections=conns):
        return [str(n) for n in reader.deserialize(raw, conn.msgtype).name]
    return []


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


def _episodes_from_streams(bag: str, s: dict[str, list[tuple[int, Any]]], slop: int,
                           stats: SyncStats) -> list[Episode]:
    """Vectorised synchronisation: every stream becomes sorted stamp and value arrays once; each
    frame then finds its partners with ``nearest_index``."""
    stores: dict[str, FrameStore] = s.pop("_stores", {})  # type: ignore[assignment]
    joint_names: list[str] = s.pop("_joint_names", [])  # type: ignore[assignment]
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
        joints, velocities = js_q[j], js_dq[j]
        if twists:
            # The final frame after the last command has none: the arm is told to stand still.
            lin_ang = np.where((c >= 0)[:, None], tw_v[np.maximum(c, 0)], 0.0)  # (T, 6)
            g = grip_v[_last_at_or_before(grip_t, t)] if grips else np.zeros(len(t))
            actions = np.concatenate([lin_ang, g[:, None]], axis=1).astype(np.float32)
            space = "ee_twist_gripper"
        else:
            actions = np.diff(joints, axis=0, append=joints[-1:]).astype(np.float32)
            space = "joint_delta"
        labels = None
        if seg:
            idx = nearest_index(seg_t, t, slop)
            if (idx >= 0).all():
                labels = stores["segmentation"].take(seg_slot[idx])
        steps = list(task["steps"]) if task else split_steps(imsg)
        p0, p1 = np.searchsorted(ph_t, [t0, t1], side="left")
        step_index = _step_labels(t, ph_t[p0:p1], [m for _, m in phases[p0:p1]], actions, space, len(steps))
        grip = grip_v[_last_at_or_before(grip_t, t)].astype(np.float32) if grips else None
        out.append(Episode(bag=bag, instruction=imsg, task=task, stamps=t.astype(np.int64), images=images,
                           joints=joints, velocities=velocities, actions=actions, action_space=space, labels=labels,
                           step_index=step_index, steps=steps, gripper=grip, joint_names=list(joint_names),
                           camera=_calibration(s.get("camera_info", []), s.get("tf_static", []), int(t0)),
                           index=k))
    return out


def _step_labels(stamps: np.ndarray, phase_t: np.ndarray, phases: list[Any], actions: np.ndarray, space: str,
                 n_steps: int) -> np.ndarray:
    """Active step per frame: from phase markers ({"step_index": k}) when present, otherwise a
    new step begins after each gripper release (close -> open) in the commands."""
    if phases:
        idx = np.array([json.loads(v).get("step_index", 0) for v in phases], dtype=np.int64)
        return idx[_last_at_or_before(phase_t, stamps)]
    if space != "ee_twist_gripper" or n_steps <= 1:
        return np.zeros(len(stamps), dtype=np.int64)
    grip = actions[:, -1]
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
