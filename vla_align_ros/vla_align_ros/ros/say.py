"""``vla-align say``: publish one instruction on the instruction topic (latched)."""

from __future__ import annotations

import time

import rclpy
from rclpy.node import Node
from std_msgs.msg import String

from ..text_input import validate_instruction
from .qos import INSTRUCTION_QOS
from .topics import INSTRUCTION


def say(text: str, topic: str = INSTRUCTION, wait_for_subscriber: float = 2.0, linger: float = 1.0) -> int:
    """Publish ``text`` once; keep the publisher alive ``linger`` seconds so late joiners get it
    (transient-local durability is served by the publisher). Returns the matched subscriber count."""
    text = validate_instruction(text)
    rclpy.init()
    node = Node("vla_align_say")
    try:
        pub = node.create_publisher(String, topic, INSTRUCTION_QOS)
        deadline = time.monotonic() + wait_for_subscriber
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        pub.publish(String(data=text))
        node.get_logger().info(f"published on {pub.topic_name}: {text!r} ({pub.get_subscription_count()} subscribers)")
        end = time.monotonic() + linger
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        return pub.get_subscription_count()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
