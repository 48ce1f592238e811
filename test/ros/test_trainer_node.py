"""trainer_node as a real ROS 2 process: trains from parameters and reports progress on a
topic that a second process reads (the launch file is checked in test_launch_files.py)."""

from __future__ import annotations

import os
import subprocess
import sys


from vla_align_ros.sim.record import record_episodes

from conftest import TINY, VENV_BIN, probe_result


LISTENER = r"""
import json, sys, time, rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from std_msgs.msg import String
rclpy.init(); n = Node("progress_listener"); got = []
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
n.create_subscription(String, "/trainer_node/progress", lambda m: got.append(json.loads(m.data)), qos)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end and not any(g["state"] in ("finished", "failed") for g in got):
    rclpy.spin_once(n, timeout_sec=0.1)
print("RESULT " + json.dumps(got), flush=True)
"""


def test_trainer_node_trains_and_reports_progress(tmp_path):
    record_episodes(tmp_path / "bag", episodes=3, seed=0, families=["place"], image_size=(32, 32), progress=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.replace("STEPS", "8").replace('hold_out: ["family=stack"]', "hold_out: []"))
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=str(int(os.environ.get("ROS_DOMAIN_ID", "150")) % 100 + 130), OMP_NUM_THREADS="1")
    listener = subprocess.Popen([sys.executable, "-c", LISTENER, "240"], env=env, stdout=subprocess.PIPE, text=True)
    node = subprocess.run([str(VENV_BIN / "trainer_node"), "--ros-args", "-p", f"bags:=['{tmp_path / 'bag'}']",
                           "-p", f"config:={cfg}", "-p", f"out:={tmp_path / 'run'}", "-p", "progress_every:=2"],
                          env=env, capture_output=True, text=True, timeout=300)
    out, _ = listener.communicate(timeout=120)
    assert node.returncode == 0, node.stdout[-2000:] + node.stderr[-2000:]
    got = probe_result(out)
    steps = [g["step"] for g in got if g["state"] == "training"]
    assert steps[:4] == [0, 2, 4, 6] and steps[-1] == 7
    assert got[-1]["state"] == "finished" and (tmp_path / "run" / "checkpoint" / "manifest.json").is_file()
    bad = subprocess.run([str(VENV_BIN / "trainer_node")], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "'bags' is empty" in bad.stderr
