"""Bags that other robots and tools write: a bare ``.mcap`` from mcap_ros2's own writer (not
rosbags) in a folder without metadata.yaml, with other topic names (given by ``--topic``), bgr8
frames with a padded row step, jpeg / png CompressedImage on ``<image>/compressed``, joint states
in another order with extra joints, JointTrajectory commands, a gripper command, camera_info and
a transient-local /tf_static. The content is a short simulator recording, re-written: it reads
(joints by name, pixels, the camera pose), trains (loss falls), evaluates, and the checkpoint
records the joint-space action space it learned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla_align_ros.data.bags import BagError, BagTopics, Episode, JointLayout, read_episodes
from vla_align_ros.image_conv import array_to_compressed_fields
from vla_align_ros.model.action_space import ActionSpace, checkpoint_action_space
from conftest import PACKAGE_DIR

ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGERS = ("panda_finger_joint1", "panda_finger_joint2")
EXTRA = ("mobile_base_yaw", "camera_pan")  # joints the other robot's driver also publishes
# The other robot's names for each stream (given to the reader and the trainer as --topic KEY=NAME).
TOPICS = {"instruction": "/task/instruction", "image": "/front_cam/color", "camera_info": "/front_cam/camera_info",
          "joint_states": "/franka/joint_states", "joint_trajectory_cmd": "/arm/joint_trajectory",
          "gripper_cmd": "/gripper/cmd"}
TOPIC_ARGS = [a for k, v in TOPICS.items() for a in ("--topic", f"{k}={v}")]
PAD = 8  # bytes of padding after each bgr8 row
_NEVER = "\n    sec: 9223372036\n    nsec: 854775807"
# what `ros2 bag record` (Jazzy and later) notes for a /tf_static publisher
TF_STATIC_QOS = (f"- history: keep_last\n  depth: 1\n  reliability: reliable\n  durability: transient_local\n"
                 f"  deadline:{_NEVER}\n  lifespan:{_NEVER}\n  liveliness: automatic\n"
                 f"  liveliness_lease_duration:{_NEVER}\n  avoid_ros_namespace_conventions: false\n")
TINY = """
model:
  vision: {kind: hf, hf_model_type: siglip, image_size: 32, patch_size: 8, hidden_size: 32, num_layers: 1, num_heads: 2}
  text: {kind: hf, max_length: 16, hidden_size: 32, num_layers: 1, num_heads: 2}
  action: {horizon: 4, action_dim: ADIM, state_dim: 9, hidden_size: 32, gripper_dims: 2, velocity: true}
  projection: {kind: mlp, embed_dim: 32, hidden_size: 64}
  heads: {num_heads: 2, policy_layers: 1, temporal_layers: 1, max_steps: 3, fine_channels: 8, ground_steps: true,
          role_pool: true}
objective: {contrastive: 0.5, spatial: 1.0, target: 1.0, affordance: 1.0, temporal: 0.5, policy: 1.0}
data: {profile: robot_observable, robot: panda, hold_out: [], val_fraction: 0.0, seq_episodes: 1, seq_len: 8}
steps: 120
batch_size: 16
lr: 0.003
warmup: 4
checkpoint_every: 1000
device: cpu
"""


class ForeignBag:
    """A recording as another tool writes it: mcap_ros2's writer and CDR encoder, message
    definitions as .msg text, one bare .mcap file in a folder with no metadata.yaml."""

    def __init__(self, folder: Path) -> None:
        from mcap_ros2.writer import Writer
        from rosbags.typesys import Stores, get_typestore

        folder.mkdir(parents=True)
        self.folder = folder
        self._file = open(folder / "robot_2024-05-01-10-00-00_0.mcap", "wb")  # noqa: SIM115 - closed in close()
        self.w = Writer(self._file)
        self._ts = get_typestore(Stores.ROS2_KILTED)  # only to spell the .msg definitions
        self._schemas: dict[str, Any] = {}

    def put(self, topic: str, msgtype: str, msg: dict[str, Any], log_ns: int, qos: str = "") -> None:
        """Write ``msg`` (a dict) on ``topic``; ``qos``: the offered_qos_profiles a recorder notes."""
        schema = self._schemas.get(msgtype)
        if schema is None:
            schema = self._schemas[msgtype] = self.w.register_msgdef(
                msgtype, self._ts.generate_msgdef(msgtype, ros_version=2)[0])
        if qos and topic not in self.w._channel_ids:  # mcap_ros2 names no QoS: register the channel as rosbag2 does
            self.w._channel_ids[topic] = self.w._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=schema.id, metadata={"offered_qos_profiles": qos})
        self.w.write_message(topic, schema, msg, log_time=log_ns, publish_time=log_ns)

    def close(self) -> Path:
        self.w.finish()
        self._file.close()
        return self.folder


def header(ns: int, frame: str = "") -> dict[str, Any]:
    return {"stamp": {"sec": ns // 10**9, "nanosec": ns % 10**9}, "frame_id": frame}


def bgr8_padded(rgb: np.ndarray, ns: int, frame: str) -> dict[str, Any]:
    """(H, W, 3) RGB -> an Image dict, bgr8, each row followed by PAD bytes of 0xAB."""
    h, w = rgb.shape[:2]
    rows = np.full((h, w * 3 + PAD), 0xAB, np.uint8)
    rows[:, : w * 3] = rgb[..., ::-1].reshape(h, w * 3)
    return {"header": header(ns, frame), "height": h, "width": w, "encoding": "bgr8", "is_bigendian": 0,
            "step": w * 3 + PAD, "data": rows.tobytes()}


def joint_state(names: list[str], values: dict[str, float], vel: dict[str, float], ns: int) -> dict[str, Any]:
    return {"header": header(ns, "panda_link0"), "name": names, "position": [values[n] for n in names],
            "velocity": [vel[n] for n in names], "effort": []}


def write_foreign(folder: Path, episodes: list[Episode], seed: int = 0) -> Path:
    """The simulator's episodes re-written as another robot would record them. Episode 1's frames
    are png and episode 3's jpeg on ``<image>/compressed``; the others padded bgr8 Images. Each
    frame's JointTrajectory (header stamp 0, as many publishers send it) targets the next frame's
    arm joints; the last frame's targets its own."""
    rng = np.random.default_rng(seed)
    bag = ForeignBag(folder)
    cam = episodes[0].camera
    start = int(episodes[0].stamps[0]) - 5_000_000
    bag.put("/tf_static", "tf2_msgs/msg/TFMessage", {"transforms": [{
        "header": header(start, cam.parent_frame), "child_frame_id": cam.frame_id,
        "transform": {"translation": dict(zip("xyz", map(float, cam.translation))),
                      "rotation": dict(zip("xyzw", map(float, cam.quaternion)))}}]}, start, qos=TF_STATIC_QOS)
    js_names = list(rng.permutation(list(ARM + FINGERS + EXTRA)))
    for e, ep in enumerate(episodes):
        bag.put(TOPICS["instruction"], "std_msgs/msg/String", {"data": ep.instruction}, int(ep.stamps[0]) - 1_000_000)
        traj_names = list(rng.permutation(list(ARM)))
        for i, ns in enumerate(map(int, ep.stamps)):
            if e in (1, 3):
                fields = array_to_compressed_fields(ep.images[i], "png" if e == 1 else "jpeg", quality=95)
                bag.put(TOPICS["image"] + "/compressed", "sensor_msgs/msg/CompressedImage",
                        {"header": header(ns, cam.frame_id), "format": fields["format"], "data": bytes(fields["data"])}, ns)
            else:
                bag.put(TOPICS["image"], "sensor_msgs/msg/Image", bgr8_padded(ep.images[i], ns, cam.frame_id), ns)
            k = cam.k
            bag.put(TOPICS["camera_info"], "sensor_msgs/msg/CameraInfo", {
                "header": header(ns, cam.frame_id), "height": cam.hw[0], "width": cam.hw[1],
                "distortion_model": "plumb_bob", "d": [0.0] * 5, "k": [float(x) for x in k.ravel()],
                "r": [float(x) for x in np.eye(3).ravel()],
                "p": [float(x) for x in np.c_[k, np.zeros(3)].ravel()], "binning_x": 0, "binning_y": 0,
                "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}}, ns)
            q = dict(zip(ARM + FINGERS, map(float, ep.joints[i]))) | {n: float(rng.normal()) for n in EXTRA}
            dq = dict(zip(ARM + FINGERS, map(float, ep.velocities[i]))) | {n: 0.0 for n in EXTRA}
            bag.put(TOPICS["joint_states"], "sensor_msgs/msg/JointState", joint_state(js_names, q, dq, ns), ns)
            target = dict(zip(ARM, map(float, ep.joints[min(i + 1, len(ep) - 1), :7])))
            bag.put(TOPICS["joint_trajectory_cmd"], "trajectory_msgs/msg/JointTrajectory", {
                "header": header(0), "joint_names": traj_names,
                "points": [{"positions": [target[n] for n in traj_names], "velocities": [], "accelerations": [],
                            "effort": [], "time_from_start": {"sec": 0, "nanosec": 50_000_000}}]}, ns)
            bag.put(TOPICS["gripper_cmd"], "std_msgs/msg/Float64", {"data": float(ep.gripper[i])}, ns)
    return bag.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[list[Episode], Path]:
    """4 simulator episodes (pick and place, 32x32) and the same written as a foreign bag."""
    from vla_align_ros.sim.record import record_episodes

    d = tmp_path_factory.mktemp("foreign")
    record_episodes(d / "sim", episodes=4, seed=2, families=["pick", "place"], image_size=(32, 32), progress=False)
    source, _ = read_episodes([d / "sim"], BagTopics().robot_observable(), joints=JointLayout.from_robot("panda"))
    return source, write_foreign(d / "other_robot", source)


def foreign_topics() -> BagTopics:
    return BagTopics().robot_observable().with_overrides([f"{k}={v}" for k, v in TOPICS.items()])


def test_foreign_bag_reads_by_name_pixels_and_pose(recorded) -> None:
    source, bag = recorded
    assert not (bag / "metadata.yaml").exists() and len(list(bag.glob("*.mcap"))) == 1
    eps, stats = read_episodes([bag], foreign_topics(), joints=JointLayout.from_robot("panda"))
    assert len(eps) == 4 and [len(e) for e in eps] == [len(e) for e in source]
    assert stats.dropped_no_joint_state == 0 and stats.frames == sum(len(e) for e in source)
    for ep, src in zip(eps, source):
        assert ep.joint_names == list(ARM + FINGERS) and ep.instruction == src.instruction
        np.testing.assert_array_equal(ep.joints, src.joints)  # shuffled + extra joints -> the wanted columns
        np.testing.assert_array_equal(ep.velocities, src.velocities)
        np.testing.assert_array_equal(ep.gripper, src.gripper)
        # joint-space actions: the trajectory target (next frame's arm joints) minus the measured ones
        np.testing.assert_allclose(ep.actions[:-1, :7], src.joints[1:, :7] - src.joints[:-1, :7], atol=1e-6)
        assert np.all(ep.actions[-1, :7] == 0) and np.array_equal(ep.actions[:, 7], src.gripper)
        assert ep.action_space == ActionSpace.joint_delta(ARM + ("gripper",), ("rad",) * 7 + ("command",))
        # the camera from camera_info and the transient-local /tf_static
        assert ep.camera.parent_frame == "panda_link0" and ep.camera.frame_id == src.camera.frame_id
        np.testing.assert_allclose(ep.camera.translation, src.camera.translation, atol=1e-12)
        np.testing.assert_allclose(ep.camera.quaternion, src.camera.quaternion, atol=1e-12)
        np.testing.assert_array_equal(ep.camera.k, src.camera.k)
    np.testing.assert_array_equal(eps[0].images, source[0].images)  # padded bgr8 -> the right RGB pixels
    np.testing.assert_array_equal(eps[2].images, source[2].images)
    np.testing.assert_array_equal(eps[1].images, source[1].images)  # png: lossless
    err = np.abs(eps[3].images.astype(np.int16) - source[3].images.astype(np.int16))
    # jpeg q95 of 32x32 frames (chroma subsampled): lossy, close (measured mean 4.5 of 255)
    assert 0 < err.mean() < 6.0 and np.percentile(err, 99) < 72, (err.mean(), np.percentile(err, 99))


def test_foreign_bag_trains_evaluates_and_records_joint_space(recorded, tmp_path) -> None:
    from vla_align_ros.cli import main

    _, bag = recorded
    cfg = tmp_path / "tiny_joint.yaml"
    cfg.write_text(TINY.replace("ADIM", "7"))  # the twist recipe's width: a clear error
    run = tmp_path / "run"
    assert main(["train", "--bags", str(bag), "--config", str(cfg), "--out", str(run), "--quiet", *TOPIC_ARGS]) == 2
    assert not run.exists()
    cfg.write_text(TINY.replace("ADIM", "8"))
    assert main(["train", "--bags", str(bag), "--config", str(cfg), "--out", str(run), "--quiet", *TOPIC_ARGS]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["total"] for r in log[:10]]), np.mean([r["total"] for r in log[-10:]])
    pol0, pol1 = np.mean([r["policy"] for r in log[:10]]), np.mean([r["policy"] for r in log[-10:]])
    # measured: total 10.5 -> 5.0, policy (the joint-space action chunks) 0.435 -> 0.097
    assert len(log) == 120 and last < 0.6 * first and pol1 < 0.5 * pol0, (first, last, pol0, pol1)
    space = checkpoint_action_space(run)
    assert space == ActionSpace.joint_delta(ARM + ("gripper",), ("rad",) * 7 + ("command",))
    meta = json.loads((run / "checkpoint" / "config.json").read_text())["metadata"]
    assert meta["action_space"]["kind"] == "joint_delta" and meta["action_space"]["frame"] == "joint"
    assert [d["unit"] for d in meta["action_space"]["dims"]] == ["rad"] * 7 + ["command"]
    # the run remembers the topic names it was trained with: eval needs no --topic
    assert main(["eval", "--checkpoint", str(run), "--bags", str(bag), "--out", str(tmp_path / "rep"),
                 "--max-frames", "120"]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["sync"]["episodes"] == 4 and "seen" in m
    # the shipped checkpoint records the twist space of the bags it was trained on
    assert checkpoint_action_space(PACKAGE_DIR / "models" / "sim_tiny") == ActionSpace.ee_twist_gripper("panda_link0")


def tiny_bag(folder: Path, js_names: list[str], *, image_msgtype: str = "sensor_msgs/msg/Image",
             positions: int | None = None) -> Path:
    """5 frames of 4x4 at 10 Hz: an instruction, images (raw rgb8, or CompressedImage png on the
    image topic itself) and joint states naming ``js_names`` (``positions`` values, one per name
    unless given)."""
    bag = ForeignBag(folder)
    base = 10**9
    bag.put("/instruction", "std_msgs/msg/String", {"data": "pick up the red cube"}, base - 1)
    for i in range(5):
        ns = base + i * 100_000_000
        img = np.full((4, 4, 3), 40 * i, np.uint8)
        if image_msgtype.endswith("CompressedImage"):
            f = array_to_compressed_fields(img, "png")
            bag.put("/camera/image_raw", image_msgtype, {"header": header(ns), "format": f["format"],
                                                          "data": bytes(f["data"])}, ns)
        else:
            bag.put("/camera/image_raw", image_msgtype, {"header": header(ns), "height": 4, "width": 4,
                                                         "encoding": "rgb8", "is_bigendian": 0, "step": 12,
                                                         "data": img.tobytes()}, ns)
        n = len(js_names) if positions is None else positions
        bag.put("/joint_states", "sensor_msgs/msg/JointState", {
            "header": header(ns), "name": js_names, "position": [0.1 * i + j for j in range(n)], "velocity": [],
            "effort": []}, ns)
    return bag.close()


def test_joints_by_name_and_clear_errors(tmp_path) -> None:
    layout = JointLayout(("b", "a"), ("f",))
    eps, _ = read_episodes([tiny_bag(tmp_path / "ok", ["x", "a", "f", "b"])], joints=layout)
    assert eps[0].joint_names == ["b", "a", "f"]
    np.testing.assert_allclose(eps[0].joints[:, 0] - eps[0].joints[:, 1], 2.0)  # b is column 3 in the bag, a 1
    np.testing.assert_allclose(eps[0].actions[:-1], 0.1, atol=1e-6)  # no command: joint_states differences
    assert eps[0].action_space == ActionSpace.joint_delta(["b", "a", "f"], ["rad", "rad", "m"])
    from dataclasses import replace

    from vla_align_ros.training.trainer import episodes_action_space

    assert episodes_action_space(eps * 2) == eps[0].action_space
    twist = replace(eps[0], action_space=ActionSpace.ee_twist_gripper("base"))
    with pytest.raises(ValueError, match=r"mix 2 action spaces: joint_delta \[b, a, f\] .*ee_twist_gripper"):
        episodes_action_space([eps[0], twist])
    with pytest.raises(BagError, match=r"joints \['b'\] are missing from joint_states .* names \['x', 'a', 'f'\]"):
        read_episodes([tiny_bag(tmp_path / "missing", ["x", "a", "f"])], joints=layout)
    with pytest.raises(BagError, match=r"names 3 joints \['b', 'a', 'f'\] but carries 4 positions"):
        read_episodes([tiny_bag(tmp_path / "short", ["b", "a", "f"], positions=4)], joints=layout)


def test_compressed_on_the_image_topic_and_wrong_types_named(tmp_path) -> None:
    eps, _ = read_episodes([tiny_bag(tmp_path / "png", ["j"], image_msgtype="sensor_msgs/msg/CompressedImage")])
    assert eps[0].images.shape == (5, 4, 4, 3) and eps[0].images[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160]
    bag = tiny_bag(tmp_path / "wrong", ["j"])
    with pytest.raises(BagError, match=r"topic /instruction \(image\) carries std_msgs/msg/String, expected "
                                       r"sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage; that type is read "
                                       r"as instruction"):
        read_episodes([bag], BagTopics(instruction="/task", image="/instruction"))
    with pytest.raises(BagError, match=r"topic /camera/image_raw \(joint_states\) carries sensor_msgs/msg/Image, "
                                       r"expected sensor_msgs/msg/JointState"):
        read_episodes([bag], BagTopics(image="/cam", joint_states="/camera/image_raw"))
    with pytest.raises(BagError, match="topics image and joint_states both name /camera/image_raw"):
        read_episodes([bag], BagTopics(joint_states="/camera/image_raw"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(BagError, match="no metadata.yaml and no .mcap or .db3 file"):
        read_episodes([empty])


def test_topic_overrides(tmp_path) -> None:
    from vla_align_ros.cli import main

    t = BagTopics().with_overrides(["image=/my/cam", "joint_states=/arm/joint_states", "twist_cmd="])
    assert (t.image, t.joint_states, t.twist_cmd, t.instruction) == ("/my/cam", "/arm/joint_states", "", "/instruction")
    assert t.opened["/my/cam/compressed"] == "image" and "" not in t.opened
    for bad in (["camera=/x"], ["image"], ["image=no_slash"]):
        with pytest.raises(ValueError, match="--topic"):
            BagTopics().with_overrides(bad)
    with pytest.raises(ValueError, match="KEY one of instruction, image, joint_states, twist_cmd, joint_trajectory_cmd"):
        BagTopics().with_overrides(["camera=/x"])
    assert main(["train", "--bags", str(tmp_path), "--out", str(tmp_path / "r"), "--topic", "camera=/x"]) == 2
