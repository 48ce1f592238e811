"""`vla-align say` over real DDS between processes: a subscriber that joins late still gets
the instruction (reliable, transient local), and bad instructions are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from conftest import VENV_BIN


LISTENER = r"""
import sys, time, rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy, HistoryPolicy
from std_msgs.msg import String
rclpy.init()
node = Node("say_listener")
got = []
qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
node.create_subscription(String, "/instruction", lambda m: got.append(m.data), qos)
end = time.monotonic() + 15
while not got and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
print(got[0] if got else "NOTHING", flush=True)
node.destroy_node(); rclpy.shutdown()
"""


def ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(int(env.get("ROS_DOMAIN_ID", "150")) % 100 + 110)
    return env


def test_late_joiner_receives_the_instruction():
    env = ros_env()
    say = subprocess.Popen([str(VENV_BIN / "vla-align"), "say", "pick   up the red\tcube", "--wait", "0",
                            "--linger", "12"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2.0)  # published before the listener exists
        out = subprocess.run([sys.executable, "-c", LISTENER], env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip().splitlines()[-1] == "pick up the red cube", out.stdout + out.stderr
    finally:
        say.terminate()
        say.wait(timeout=20)


def test_empty_and_oversized_instructions_are_refused():
    env = ros_env()
    for text, why in (("   ", "empty"), ("x" * 600, "exceeds the limit")):
        res = subprocess.run([str(VENV_BIN / "vla-align"), "say", text, "--wait", "0", "--linger", "0"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and why in res.stderr
