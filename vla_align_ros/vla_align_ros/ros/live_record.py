"""Record live topics to rosbag2 through rclpy raw subscriptions (``ros2 bag record`` is not
installable from PyPI). The bytes on the wire are written unchanged; stamps are receive times."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Sequence

import rclpy
from rclpy.node import Node

from .qos import RECORD_QOS


def _message_class(type_name: str):
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _typestore_with_package_messages():
    """Kilted's standard types plus this package's own messages (from msg/*.msg)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    try:
        from ament_index_python.packages import get_package_share_directory

        msg_dir = Path(get_package_share_directory("vla_align_msgs")) / "msg"
        add = {}
        for f in sorted(msg_dir.glob("*.msg")):
            add.update(get_types_from_msg(f.read_text(), f"vla_align_msgs/msg/{f.stem}"))
        ts.register(add)
    except Exception:  # noqa: BLE001 - the package's messages are optional for recording
        pass
    return ts


def record_topics(out: str | Path, topics: Sequence[str], duration: float, storage: str = "mcap",
                  discovery_timeout: float = 5.0) -> dict[str, int]:
    """Subscribe (raw) to ``topics`` for ``duration`` seconds and write every message."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    ts = _typestore_with_package_messages()
    rclpy.init()
    node = Node("vla_align_recorder")
    counts: dict[str, int] = {t: 0 for t in topics}
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    writer.open()
    try:
        types: dict[str, str] = {}
        deadline = time.monotonic() + discovery_timeout
        while time.monotonic() < deadline and len(types) < len(topics):
            for name, tys in node.get_topic_names_and_types():
                if name in topics and tys:
                    types[name] = tys[0]
            rclpy.spin_once(node, timeout_sec=0.05)
        missing = [t for t in topics if t not in types]
        if missing:
            raise RuntimeError(f"no publisher found for {missing} within {discovery_timeout} s")
        for topic, type_name in types.items():
            if type_name not in ts.types:
                raise RuntimeError(f"{topic}: type {type_name} is unknown to the bag writer")
            conn = writer.add_connection(topic, type_name, typestore=ts)

            def write(data: bytes, conn=conn, topic=topic) -> None:
                writer.write(conn, time.time_ns(), data)
                counts[topic] += 1

            node.create_subscription(_message_class(type_name), topic, write, RECORD_QOS, raw=True)
        end = time.monotonic() + duration
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        writer.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return counts
