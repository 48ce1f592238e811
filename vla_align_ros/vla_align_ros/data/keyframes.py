"""Labels a demonstration gives by itself, from the robot's own signals: where the hand acted.

Keyframes come from the gripper and the end effector's path (forward kinematics of the robot
description): a *grasp* where the gripper closes on something (the fingers stop apart), a
*release* where it opens again, and a *push* where the hand, holding nothing, moves along the
table below ``push_max_height``. Each step of the demonstration is a grasp (then maybe a release)
or a push; steps follow each other in time. Projected through the calibrated camera, a step's
keyframes give every earlier frame of that step a *pick pixel* (where the hand took hold of, or
started pushing, the object) and a *place pixel* (where it let go, or stopped pushing).

Heights: the grasp point is taken half the grasp height above the table (``table_z``)
(inside the object), the place point on the surface the object was put on (the release height
less the grasp height). Pure NumPy; no simulator, no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..robots.camera import CameraModel

CLOSED_BELOW = 0.75  # gripper closed: command (or opening) under this fraction of the widest seen
HOLDING_ABOVE = 0.2  # closed on something: fingers still this fraction of the widest apart
MIN_PUSH_M = 0.03  # a push moves the hand at least this far along the table
PUSH_PAUSE_S = 0.5  # a push that pauses for less than this is one push
PUSH_SPEED = 0.01  # m/s: horizontal speed above which the low hand counts as moving


class LabelError(ValueError):
    """A demonstration that cannot be labelled, with the episode and what is missing."""


@dataclass(frozen=True)
class Step:
    kind: str  # "grasp" (picked and held), "place" (grasped, then released) or "push"
    start: int  # first frame of the step
    act: int  # frame of the grasp, or where the push starts
    end: int | None  # frame of the release or the push's end (None: held to the end)
    pick_xyz: np.ndarray  # (3,) base frame
    place_xyz: np.ndarray | None  # (3,)


@dataclass
class DemoLabels:
    steps: list[Step]
    step_index: np.ndarray  # (T,) active step per frame (a step ends where the next begins)
    pick_px: np.ndarray  # (T, 2) [row, col] of the active step's pick point; NaN once the object moved
    place_px: np.ndarray  # (T, 2) of its place point; NaN for a step that places nothing, or after it

    def step_frames(self, k: int) -> range:
        """Frames of step ``k``: from its start to the next step's (the episode's end for the last)."""
        end = self.steps[k + 1].start if k + 1 < len(self.steps) else len(self.step_index)
        return range(self.steps[k].start, end)

    @property
    def has_pick(self) -> np.ndarray:
        return np.isfinite(self.pick_px).all(1)

    @property
    def has_place(self) -> np.ndarray:
        return np.isfinite(self.place_px).all(1)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    d = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def find_steps(ee: np.ndarray, closed: np.ndarray, holding: np.ndarray, stamps_s: np.ndarray, table_z: float,
               push_max_height: float) -> list[Step]:
    """ee: (T, 3) end-effector positions; closed: (T,) bool gripper commanded closed; holding:
    (T,) bool fingers apart while closed (something in the hand); stamps_s: (T,) seconds."""
    t = len(ee)
    events: list[tuple[int, str, int]] = []  # (frame, kind, end frame)
    for a, b in _runs(closed):
        if holding[a + (b - a) // 2: b].mean() > 0.5:  # once the fingers have settled
            events.append((a, "grasp", b if b < t else -1))
    # pushes: low, horizontal, sustained motion while nothing is held
    free = ~(closed & holding)
    dt = np.gradient(stamps_s) if t > 1 else np.ones(t)
    speed = np.linalg.norm(np.gradient(ee[:, :2], axis=0), axis=1) / np.maximum(dt, 1e-6)
    low = ee[:, 2] < table_z + push_max_height
    runs: list[list[int]] = []
    for a, b in _runs(free & low & (speed > PUSH_SPEED)):
        if runs and stamps_s[a] - stamps_s[runs[-1][1] - 1] < PUSH_PAUSE_S and free[runs[-1][1]:a].all():
            runs[-1][1] = b
        else:
            runs.append([a, b])
    for a, b in runs:
        if np.linalg.norm(ee[b - 1, :2] - ee[a, :2]) >= MIN_PUSH_M:
            events.append((a, "push", b - 1))
    events.sort()
    steps: list[Step] = []
    start = 0
    for frame, kind, end in events:
        if kind == "grasp":
            height = max(ee[frame, 2] - table_z, 0.0)  # grasp point above the surface it stood on
            pick = ee[frame] - [0.0, 0.0, 0.5 * height]
            if end >= 0:
                place = ee[end] - [0.0, 0.0, height]
                steps.append(Step("place", start, frame, end, pick, place))
                start = end + 1
            else:
                steps.append(Step("grasp", start, frame, None, pick, None))
                start = t
        else:
            half = 0.5 * max(ee[frame, 2] - table_z, 0.0)
            steps.append(Step("push", start, frame, end, ee[frame] - [0.0, 0.0, half], ee[end] - [0.0, 0.0, half]))
            start = end + 1
    return steps


def demo_labels(ee: np.ndarray, gripper_cmd: np.ndarray | None, opening: np.ndarray, stamps_ns: np.ndarray,
                camera: CameraModel, image_hw: tuple[int, int], table_z: float, push_max_height: float,
                where: str) -> DemoLabels:
    """Every frame's pick and place pixel (see the module docstring). ``gripper_cmd``: (T,) the
    commanded opening in force (None: the fingers' own opening decides); ``opening``: (T,) the
    fingers' measured opening. Raises ``LabelError`` naming ``where`` when nothing happens."""
    t = len(ee)
    if not np.isfinite(ee).all():
        raise LabelError(f"{where}: the forward kinematics gave non-finite positions (bad joint_states)")
    widest = float(np.nanmax(opening)) if opening.size else 0.0
    signal = opening if gripper_cmd is None else gripper_cmd
    ref = float(np.nanmax(signal)) if signal.size else 0.0
    closed = signal < CLOSED_BELOW * ref if ref > 0 else np.zeros(t, dtype=bool)
    holding = opening > HOLDING_ABOVE * widest if widest > 0 else np.zeros(t, dtype=bool)
    stamps_s = (stamps_ns - stamps_ns[0]).astype(np.float64) * 1e-9
    steps = find_steps(ee, closed, holding, stamps_s, table_z, push_max_height)
    if not steps:
        what = "never closes on an object" if not closed.any() else "closes on nothing"
        raise LabelError(f"{where}: the gripper {what} and the hand never pushes along the table, so the "
                         "demonstration has no keyframe to label")
    labels = DemoLabels(steps=steps, step_index=np.zeros(t, dtype=np.int64), pick_px=np.full((t, 2), np.nan),
                        place_px=np.full((t, 2), np.nan))
    step_index, pick_px, place_px = labels.step_index, labels.pick_px, labels.place_px
    h, w = image_hw
    for i, s in enumerate(steps):
        frames = labels.step_frames(i)
        step_index[frames.start:frames.stop] = i
        pick = camera.project(s.pick_xyz)
        pick_px[s.start: s.act + 1] = pick
        if s.place_xyz is not None:
            place_px[s.start: (s.end if s.end is not None else t) + 1] = camera.project(s.place_xyz)
    for arr in (pick_px, place_px):  # a point outside the image is not a label
        outside = (arr[:, 0] < -0.5) | (arr[:, 0] > h - 0.5) | (arr[:, 1] < -0.5) | (arr[:, 1] > w - 0.5)
        arr[outside] = np.nan
    return labels


def episode_camera(ep, robot) -> CameraModel:
    """The camera of an ``Episode`` for its images: camera_info's intrinsics and the /tf_static
    pose (or the robot config's ``camera_pose``). Raises ``CameraPoseError`` naming the episode."""
    from ..robots.camera import CameraPoseError

    where = f"{ep.bag} episode {ep.index} ({ep.instruction!r})"
    cal = ep.camera
    if cal is None:
        raise CameraPoseError(f"{where}: the bag has no camera_info, so the camera's intrinsics are missing")
    camera = robot.camera(cal.k, cal.parent_frame, cal.translation, cal.quaternion, where)
    if cal.hw != tuple(ep.images.shape[1:3]):
        camera = camera.resized(*ep.images.shape[1:3], from_hw=cal.hw)
    return camera


def label_episode(ep, robot, kinematics) -> DemoLabels:
    """An ``Episode`` (data.bags) labelled from its own signals: ``robot`` a ``RobotConfig``,
    ``kinematics`` a ``RobotKinematics`` of its description. Raises ``LabelError`` naming the
    episode and what is missing (camera intrinsics or pose, gripper, keyframes)."""
    from ..robots.camera import CameraPoseError
    from ..robots.kinematics import RobotDescriptionError

    where = f"{ep.bag} episode {ep.index} ({ep.instruction!r})"
    try:
        camera = episode_camera(ep, robot)
        names = ep.joint_names or kinematics.joint_names
        ee = kinematics.ee_positions(ep.joints, names)
    except (CameraPoseError, RobotDescriptionError) as e:
        raise LabelError(str(e)) from e
    fingers = [names.index(n) for n in robot.gripper_joints if n in names]
    if not fingers:
        raise LabelError(f"{where}: none of the gripper joints {robot.gripper_joints} is in joint_states ({names})")
    opening = ep.joints[:, fingers].sum(1)
    return demo_labels(ee, ep.gripper, opening, ep.stamps, camera, tuple(ep.images.shape[1:3]), robot.table_z,
                       robot.push_max_height, where)


def align_to_text_steps(labels: DemoLabels, n_text_steps: int) -> DemoLabels:
    """The labels re-indexed by the instruction's own steps (``text_input.split_steps``). One
    text step per demonstrated step: unchanged. Twice as many ("pick up A, then put it on B"):
    each grasp also ends a step, so its first half picks (pick pixel, no place) and its second
    places (place pixel). Any other count: every frame in one step, labels unchanged."""
    n = len(labels.steps)
    if n_text_steps == n or n_text_steps <= 1:
        return DemoLabels(labels.steps, np.minimum(labels.step_index, max(n_text_steps - 1, 0)), labels.pick_px,
                          labels.place_px)
    if n_text_steps != 2 * n:
        return DemoLabels(labels.steps, np.zeros_like(labels.step_index), labels.pick_px, labels.place_px)
    step_index = 2 * labels.step_index
    place_px = labels.place_px.copy()
    for k, st in enumerate(labels.steps):
        rows = np.flatnonzero(labels.step_index == k)
        before = rows[rows <= st.act]
        place_px[before] = np.nan  # "pick up A" says nothing of where A goes
        step_index[rows[rows > st.act]] += 1
    return DemoLabels(labels.steps, step_index, labels.pick_px, place_px)


def ee_path(ep, kinematics) -> tuple[np.ndarray, np.ndarray]:
    """An episode's end-effector path: (positions (T, 3), rotations (T, 3, 3)), base frame."""
    names = ep.joint_names or kinematics.joint_names
    poses = [kinematics.ee_pose(row, names) for row in ep.joints]
    return np.stack([p for p, _ in poses]), np.stack([r for _, r in poses])
