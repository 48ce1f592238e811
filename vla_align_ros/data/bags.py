"""rosbag2 recordings (mcap or sqlite3, from any recorder) -> synchronised episodes.

Only topic names and types matter. The image stream is the reference clock: every frame is
paired with the nearest joint state and command within ``slop`` seconds by header stamp;
frames without a partner are dropped and counted. Episodes start at each instruction message.
Actions come from the recorded twist (+ gripper) commands, or from joint-state differences
when no command topic exists. Step labels come from phase markers when they exist, otherwise
from gripper close -> open events.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..image_conv import ImageError, image_to_array


class BagError(ValueError):
    """A recording that cannot be used, with what is wrong and what the bag contains."""


@dataclass
class BagTopics:
    instruction: str = "/instruction"
    image: str = "/camera/image_raw"
    joint_states: str = "/joint_states"
    twist_cmd: str = "/servo_node/delta_twist_cmds"
    gripper_cmd: str = "/gripper/command"
    segmentation: str = "/ground_truth/segmentation"
    task: str = "/ground_truth/task"
    phase: str = "/ground_truth/phase"

    REQUIRED = ("instruction", "image", "joint_states")


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
    actions: np.ndarray  # (T, A)
    action_space: str  # "ee_twist_gripper" | "joint_delta"
    labels: np.ndarray | None  # (T, H, W) uint8 segmentation labels
    step_index: np.ndarray  # (T,) int, which instruction step is active
    steps: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stamps)


def _stamp(msg: Any) -> int:
    """Header stamp in integer nanoseconds (floats would blur equal stamps)."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


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


def _nearest(stamps: list[int], t: int, slop: int) -> int | None:
    if not stamps:
        return None
    i = bisect_left(stamps, t)
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - t))
    return best if abs(stamps[best] - t) <= slop else None


def describe_bag(path: Path) -> str:
    """One line per topic: name, type, message count (for error messages)."""
    from rosbags.highlevel import AnyReader

    try:
        with AnyReader([path]) as reader:
            return "; ".join(f"{c.topic} [{c.msgtype}] x{c.msgcount}" for c in reader.connections) or "no topics"
    except Exception as e:  # noqa: BLE001
        return f"unreadable ({e})"


def _open_check(path: Path, topics: BagTopics) -> None:
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise BagError(f"{path}: no such bag")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        files = sorted(p.name for p in path.iterdir())
        raise BagError(f"{path}: no metadata.yaml, so this is not a complete rosbag2 recording (files: {files}); "
                       f"a recorder that was killed can leave one behind, `ros2 bag reindex` rebuilds it")
    try:
        with AnyReader([path]) as reader:
            present = {c.topic: c for c in reader.connections}
            for key in BagTopics.REQUIRED:
                name = getattr(topics, key)
                if name not in present:
                    raise BagError(f"{path}: required topic {name} ({key}) is missing; the bag contains: "
                                   f"{describe_bag(path)}")
                if present[name].msgcount == 0:
                    raise BagError(f"{path}: required topic {name} ({key}) has no messages; the bag contains: "
                                   f"{describe_bag(path)}")
    except BagError:
        raise
    except Exception as e:  # noqa: BLE001 - rosbags raises several types for broken files
        raise BagError(f"{path}: cannot read the bag ({type(e).__name__}: {e}); it may be truncated") from e


def read_episodes(paths: Sequence[str | Path], topics: BagTopics | None = None, slop: float = 0.02,
                  ) -> tuple[list[Episode], SyncStats]:
    """Read every bag and return its synchronised episodes."""
    from rosbags.highlevel import AnyReader

    topics = topics or BagTopics()
    stats = SyncStats()
    episodes: list[Episode] = []
    for p in map(Path, paths):
        _open_check(p, topics)
        streams: dict[str, list[tuple[int, Any]]] = {}
        wanted = {getattr(topics, k): k for k in vars(BagTopics()) if isinstance(getattr(topics, k), str)}
        try:
            with AnyReader([p]) as reader:
                conns = [c for c in reader.connections if c.topic in wanted]
                for conn, log_ns, raw in reader.messages(connections=conns):
                    key = wanted[conn.topic]
                    msg = reader.deserialize(raw, conn.msgtype)
                    t = _stamp(msg) if hasattr(msg, "header") else int(log_ns)
                    streams.setdefault(key, []).append((t, msg))
        except Exception as e:  # noqa: BLE001
            raise BagError(f"{p}: reading failed part-way ({type(e).__name__}: {e}); the bag may be truncated") from e
        episodes.extend(_episodes_from_streams(str(p), streams, int(round(slop * 1e9)), stats))
    stats.episodes = len(episodes)
    if not episodes:
        raise BagError(f"no usable episodes in {[str(p) for p in paths]} (sync stats: {stats.as_dict()})")
    return episodes, stats


def _episodes_from_streams(bag: str, s: dict[str, list[tuple[int, Any]]], slop: int,
                           stats: SyncStats) -> list[Episode]:
    for v in s.values():
        v.sort(key=lambda x: x[0])
    instr = s.get("instruction", [])
    js = s.get("joint_states", [])
    js_t = [t for t, _ in js]
    twists = s.get("twist_cmd", [])
    tw_t = [t for t, _ in twists]
    grips = s.get("gripper_cmd", [])
    seg = s.get("segmentation", [])
    seg_t = [t for t, _ in seg]
    tasks = s.get("task", [])
    phases = s.get("phase", [])
    out: list[Episode] = []
    for k, (t0, imsg) in enumerate(instr):
        t1 = instr[k + 1][0] if k + 1 < len(instr) else 2**63
        task = next((json.loads(m.data) for t, m in tasks if abs(t - t0) <= slop), None)
        frames = [(t, m) for t, m in s["image"] if t0 <= t < t1]
        if k == 0:
            stats.dropped_before_instruction += sum(1 for t, _ in s["image"] if t < t0)
        episode_cmds = [t for t in tw_t if t0 <= t < t1]
        last_cmd = episode_cmds[-1] if episode_cmds else -1
        rows = []
        for t, m in frames:
            stats.frames += 1
            j = _nearest(js_t, t, slop)
            if j is None:
                stats.dropped_no_joint_state += 1
                continue
            c = _nearest(tw_t, t, slop) if twists else None
            if twists and c is None and t < last_cmd:  # a gap in the commands mid-episode
                stats.dropped_no_command += 1
                continue
            rows.append((t, m, j, c))
        if len(rows) < 2:
            continue
        images = np.stack([_colour_image(m) for _, m, _, _ in rows])
        joints = np.stack([np.asarray(js[j][1].position, dtype=np.float32) for _, _, j, _ in rows])
        stamps = np.array([t for t, *_ in rows], dtype=np.int64)
        if twists:
            grip_t = [t for t, _ in grips]
            acts = []
            for t, _, _, c in rows:
                if c is None:  # final frame after the last command: the arm is told to stand still
                    lin = ang = np.zeros(3)
                else:
                    tw = twists[c][1].twist
                    lin = np.array([tw.linear.x, tw.linear.y, tw.linear.z])
                    ang = np.array([tw.angular.x, tw.angular.y, tw.angular.z])
                g = grips[max(bisect_left(grip_t, t + 1) - 1, 0)][1].data if grips else 0.0
                acts.append(np.r_[lin, ang, g])
            actions = np.asarray(acts, dtype=np.float32)
            space = "ee_twist_gripper"
        else:
            actions = np.diff(joints, axis=0, append=joints[-1:]).astype(np.float32)
            space = "joint_delta"
        labels = None
        if seg:
            idx = [_nearest(seg_t, t, slop) for t in stamps]
            if all(i is not None for i in idx):
                labels = np.stack([_image_array(seg[i][1])[..., 0] for i in idx])
        steps = list(task["steps"]) if task else [imsg.data]
        step_index = _step_labels(stamps, [(t, m) for t, m in phases if t0 <= t < t1], actions, space, len(steps))
        out.append(Episode(bag=bag, instruction=imsg.data, task=task, stamps=stamps, images=images, joints=joints,
                           actions=actions, action_space=space, labels=labels, step_index=step_index, steps=steps))
    return out


def _step_labels(stamps: np.ndarray, phases: list[tuple[int, Any]], actions: np.ndarray, space: str,
                 n_steps: int) -> np.ndarray:
    """Active step per frame: from phase markers ({"step_index": k}) when present, otherwise a
    new step begins after each gripper release (close -> open) in the commands."""
    if phases:
        times = [t for t, _ in phases]
        idx = [json.loads(m.data).get("step_index", 0) for _, m in phases]
        return np.array([idx[max(bisect_left(times, int(t) + 1) - 1, 0)] for t in stamps], dtype=np.int64)
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
