"""trainer_node as a real ROS 2 process: trains from parameters and reports progress on a
topic that a second process reads; the launch file is checked statically (no `launch` here)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla_align_ros.sim.record import record_episodes

from test_train import TINY

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.prefix) / "bin"

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
    got = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
    steps = [g["step"] for g in got if g["state"] == "training"]
    assert steps[:4] == [0, 2, 4, 6] and steps[-1] == 7
    assert got[-1]["state"] == "finished" and (tmp_path / "run" / "checkpoint" / "manifest.json").is_file()
    bad = subprocess.run([str(VENV_BIN / "trainer_node")], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "'bags' is empty" in bad.stderr


def _declared_parameters(py: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "declare_parameter":
            if node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    return names


def test_train_launch_file_is_consistent():
    """Every executable is a console script, every argument has a description, the parameter
    file exists and names only parameters the node declares."""
    import yaml

    tree = ast.parse((REPO / "launch" / "train.launch.py").read_text())
    setup = (REPO / "setup.py").read_text()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        name = getattr(call.func, "id", getattr(call.func, "attr", ""))
        kw = {k.arg: k.value for k in call.keywords}
        if name == "DeclareLaunchArgument":
            assert "description" in kw and isinstance(kw["description"], ast.Constant) and kw["description"].value
        if name == "Node":
            exe = kw["executable"].value
            assert f'"{exe} = vla_align_ros.' in setup
    declared = _declared_parameters(REPO / "vla_align_ros" / "ros" / "trainer_node.py")
    params = yaml.safe_load((REPO / "config" / "train" / "trainer_node.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) <= declared, set(params) - declared
    launch_params = {"bags", "out", "config", "resume"}
    assert launch_params <= declared
