"""Demonstrations as rosbag2: readable by rosbags' AnyReader and the mcap library, messages
deserialise with rclpy, metadata present, and the same seed gives identical messages."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vla_align_ros.sim.record import record_episodes
from vla_align_ros.sim.topics import TOPIC_TYPES, SimTopics
from conftest import CONFIG_DIR, PACKAGE_DIR, REPO


def digest_messages(bag: Path) -> tuple[str, dict[str, int]]:
    from rosbags.highlevel import AnyReader

    h = hashlib.sha256()
    counts: dict[str, int] = {}
    with AnyReader([bag]) as reader:
        for conn, stamp, raw in reader.messages():
            h.update(conn.topic.encode())
            h.update(stamp.to_bytes(8, "little"))
            h.update(bytes(raw))
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
    return h.hexdigest(), counts


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recording_is_deterministic_and_complete(tmp_path, storage):
    a = record_episodes(tmp_path / "a", episodes=2, seed=5, families=["push", "place"], storage=storage,
                        image_size=(48, 48), progress=False)
    record_episodes(tmp_path / "b", episodes=2, seed=5, families=["push", "place"], storage=storage,
                    image_size=(48, 48), progress=False)
    assert a.successes == 2 and a.per_family == {"push": [1, 1], "place": [1, 1]}
    assert (tmp_path / "a" / "metadata.yaml").is_file()
    da, counts = digest_messages(tmp_path / "a")
    db, _ = digest_messages(tmp_path / "b")
    assert da == db  # identical message contents and stamps
    topics = SimTopics()
    assert counts[topics.instruction] == 2 and counts[topics.gt_success] == 2
    assert counts[topics.image] == counts[topics.joint_states] == counts[topics.gt_segmentation]
    assert counts[topics.twist_cmd] == counts[topics.image] - 2  # one command per step; first frames precede them
    assert counts[topics.gt_phase] >= 2 * 4


def test_bag_reads_with_rclpy_and_mcap(tmp_path):
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    record_episodes(tmp_path / "bag", episodes=1, seed=1, families=["pick_then_place"], image_size=(40, 40),
                    progress=False)
    stamps: list[int] = []
    with AnyReader([tmp_path / "bag"]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {getattr(SimTopics(), k): v for k, v in TOPIC_TYPES.items() if k != "joint_trajectory_cmd"}
        for conn, stamp, raw in reader.messages():
            if conn.topic == "/camera/image_raw":
                img = deserialize_message(bytes(raw), Image)
                assert (img.width, img.height, img.encoding, img.step) == (40, 40, "rgb8", 120)
                assert len(img.data) == 40 * 40 * 3
                assert img.header.stamp.sec * 10**9 + img.header.stamp.nanosec == stamp  # header stamp = log time
                stamps.append(stamp)
            elif conn.topic == "/joint_states":
                js = deserialize_message(bytes(raw), JointState)
                assert list(js.name)[:7] == [f"panda_joint{i}" for i in range(1, 8)] and len(js.position) == 9
            elif conn.topic == "/ground_truth/task":
                task = json.loads(deserialize_message(bytes(raw), String).data)
                assert task["family"] == "pick_then_place" and len(task["steps"]) == 2
    assert stamps == sorted(stamps) and len(stamps) > 50
    from mcap.reader import make_reader

    with open(next((tmp_path / "bag").glob("*.mcap")), "rb") as f:
        summary = make_reader(f).get_summary()
    assert {c.topic for c in summary.channels.values()} == set(types)


def test_cli_record_reports_per_family(tmp_path):
    exe = Path(sys.prefix) / "bin" / "vla-align"
    out = subprocess.run([str(exe), "record", "--episodes", "2", "--out", str(tmp_path / "bag"), "--tasks", "pick",
                          "stack", "--image-size", "32", "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert summary["per_family"] == {"pick": {"success": 1, "episodes": 1}, "stack": {"success": 1, "episodes": 1}}
    bad = subprocess.run([str(exe), "record", "--episodes", "1", "--out", str(tmp_path / "x"), "--tasks", "juggle"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown task family 'juggle'" in bad.stderr


# The first scene (3 episodes) of the recording `make checkpoint` trains models/sim_tiny from,
# after `vla-align strip`: 1806 messages. A change to the simulator, the expert, the recorder or
# the strip that alters what the shipped model was trained on changes this digest; then
# `make checkpoint` no longer reproduces models/sim_tiny, and the model must be re-shipped (and its
# figures re-measured) in the same change, with this digest.
SHIPPED_RECORDING_PREFIX = "5dab42a6f6afd350983492825a446b4032a78b5484f3d6f5aca097af882c76d7"


def test_shipped_model_recipe_is_unchanged(tmp_path):
    from vla_align_ros.data.bag_tools import copy_without_topics
    from vla_align_ros.training.trainer import TrainConfig

    make = (REPO / "Makefile").read_text()
    assert "record --episodes 240 --seed 0 --tasks-per-scene 3 " in make, "make checkpoint's recording changed"
    assert "train --bags $(REPRO)/bags/train --config vla_align_ros/config/train/sim_tiny.yaml " in make
    # the recipe: vla_align_ros/config/train/sim_tiny.yaml resolves to the config the shipped model was trained with
    shipped = json.loads((PACKAGE_DIR / "models" / "sim_tiny" / "train_config.json").read_text())
    recipe = json.loads(json.dumps(TrainConfig.from_yaml(CONFIG_DIR / "train" / "sim_tiny.yaml").to_dict(),
                                   default=str))
    assert recipe == shipped
    # the data: the recording's first scene, byte for byte
    record_episodes(tmp_path / "sim", episodes=3, seed=0, progress=False, tasks_per_scene=3)
    counts = copy_without_topics(tmp_path / "sim", tmp_path / "train")
    digest, per_topic = digest_messages(tmp_path / "train")
    assert sum(per_topic.values()) == counts["kept"] == 1806, per_topic
    assert not any(t.startswith("/ground_truth/") for t in per_topic)
    assert digest == SHIPPED_RECORDING_PREFIX, (
        "the recording make checkpoint trains on has changed: re-ship models/sim_tiny from make checkpoint "
        "(and re-measure its figures), or find what changed the simulator's output")
