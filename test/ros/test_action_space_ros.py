"""policy_node checks the checkpoint's action space against its command mode when it sends the
model's own actions (policy:=chunk), in real node processes over DDS: a joint-delta checkpoint is
refused in twist mode, a twist checkpoint in joint_trajectory mode, each with an error that names
both; a joint-delta checkpoint in joint_trajectory mode sends measured + delta as joint targets
and never a twist."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import VENV_BIN, probe_result, ros_env

ARM = [f"panda_joint{i}" for i in range(1, 8)]

PROBE = r"""
import json, sys, time, rclpy
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, DurabilityPolicy, ReliabilityPolicy
from geometry_msgs.msg import TwistStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, String
from trajectory_msgs.msg import JointTrajectory
from vla_align_msgs.msg import ActionChunk

rclpy.init()
n = Node("space_probe")
got = {"twists": 0, "traj": [], "chunks": [], "gripper": 0, "status": {}}
n.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", lambda m: got.__setitem__("twists", got["twists"] + 1), 10)
n.create_subscription(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", lambda m: got["traj"].append(
    (list(m.joint_names), [list(p.positions) for p in m.points], [p.time_from_start.nanosec for p in m.points])), 50)
n.create_subscription(ActionChunk, "/policy_node/action_chunk", lambda m: got["chunks"].append(
    (m.action_space, list(m.dimension_names), np.asarray(m.data, float).reshape(m.horizon, -1).tolist())), 50)
n.create_subscription(Float64, "/gripper/command", lambda m: got.__setitem__("gripper", got["gripper"] + 1), 10)
n.create_subscription(String, "/policy_node/status", lambda m: got.__setitem__("status", json.loads(m.data)), 10)
img_pub = n.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
js_pub = n.create_publisher(JointState, "/joint_states", 10)
latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
ins_pub = n.create_publisher(String, "/instruction", latched)
frame = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
HOME = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]
deadline = time.monotonic() + 150
while time.monotonic() < deadline and not got["status"].get("active"):
    rclpy.spin_once(n, timeout_sec=0.1)
ins_pub.publish(String(data="pick up the red cube"))
end = time.monotonic() + 60; nxt = 0.0
while time.monotonic() < end and len(got["traj"]) < 40:
    if time.monotonic() >= nxt:
        stamp = n.get_clock().now().to_msg()
        m = Image(); m.header.stamp = stamp; m.header.frame_id = "cam"; m.height = m.width = 96
        m.encoding = "rgb8"; m.step = 96 * 3; m.data = frame.tobytes(); img_pub.publish(m)
        # the arm's joints in another order, with the fingers first
        j = JointState(); j.header.stamp = stamp
        j.name = ["panda_finger_joint1", "panda_finger_joint2"] + [f"panda_joint{i}" for i in range(7, 0, -1)]
        j.position = [0.04, 0.04] + HOME[::-1]; js_pub.publish(j)
        nxt = time.monotonic() + 0.1
    rclpy.spin_once(n, timeout_sec=0.01)
print("RESULT " + json.dumps(got), flush=True)
n.destroy_node(); rclpy.shutdown()
"""


def relabelled_checkpoint(dst: Path, action_space) -> Path:
    """A copy of the shipped checkpoint whose metadata says ``action_space`` (re-hashed)."""
    from vla_align_ros.model.checkpoint import add_to_manifest
    from vla_align_ros.paths import shipped_model

    ckpt = Path(shutil.copytree(shipped_model() / "checkpoint", dst))
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["metadata"]["action_space"] = action_space
    (ckpt / "config.json").write_text(json.dumps(cfg, indent=2))
    add_to_manifest(ckpt, "config.json")
    return ckpt


def start_node(env: dict, ckpt: Path, mode: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "policy_node"), "--ros-args", "-r", f"__node:={name}",
                             "-p", f"checkpoint:={ckpt}", "-p", "policy:=chunk", "-p", f"command_mode:={mode}",
                             "-p", "autostart:=true", "-p", "robot:=panda_sim"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_log(proc: subprocess.Popen, needles: tuple[str, ...], timeout: float) -> str:
    """Stop ``proc`` once one of ``needles`` is in its output (or after ``timeout``); its log."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    log, end = "", time.monotonic() + timeout
    while time.monotonic() < end and not any(s in log for s in needles) and proc.poll() is None:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            log += line
    proc.send_signal(2)
    return log + proc.communicate(timeout=30)[0]


def test_mislabelled_checkpoints_are_refused_and_joint_deltas_go_out_as_joint_targets(tmp_path):
    from vla_align_ros.model.action_space import ActionSpace
    from vla_align_ros.paths import shipped_model

    joint_ckpt = relabelled_checkpoint(tmp_path / "joint_delta", ActionSpace.joint_delta(ARM).to_dict())
    env_refuse, env_run = ros_env(44), ros_env(45)
    refuse_twist = start_node(env_refuse, joint_ckpt, "twist", "refuse_twist")
    refuse_joint = start_node(env_refuse, shipped_model(), "joint_trajectory", "refuse_joint")
    runs = start_node(env_run, joint_ckpt, "joint_trajectory", "policy_node")
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=env_run, capture_output=True, text=True, timeout=240)
        needles = ("configure failed", "configured:")
        log_twist = wait_for_log(refuse_twist, needles, 120)
        log_joint = wait_for_log(refuse_joint, needles, 120)
    finally:
        for p in (refuse_twist, refuse_joint, runs):
            if p.poll() is None:
                p.send_signal(2)
        run_log = runs.communicate(timeout=30)[0]
    # refused, naming the checkpoint's space and the command mode
    for log, space, mode in ((log_twist, "joint_delta", "twist"), (log_joint, "ee_twist_gripper", "joint_trajectory")):
        assert "configure failed: ActionSpaceError" in log, log[-2000:]
        line = next(l for l in log.splitlines() if "configure failed" in l)
        assert space in line and f"command_mode={mode!r}" in line, line
        assert "configured:" not in log
    # the joint-delta checkpoint in joint_trajectory mode: chunks declared joint_delta, targets =
    # measured + a chunk row (the measured joints arrive shuffled, fingers first), no twist ever
    r = probe_result(probe.stdout, probe.stderr, run_log)
    assert "checkpoint action space: joint_delta" in run_log, run_log[-2000:]
    assert r["twists"] == 0 and r["gripper"] == 0  # no gripper dimension in this space
    assert len(r["chunks"]) >= 5 and all(c[0] == "joint_delta" and c[1] == ARM for c in r["chunks"])
    assert len(r["traj"]) >= 20
    home = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
    rows = np.array([row for c in r["chunks"] for row in c[2]])
    matched = 0
    for names, points, tfs in r["traj"]:
        assert names == ARM and len(points) == 1 and tfs == [50_000_000]
        q = np.array(points[0])
        assert np.all(np.abs(q - home) <= 0.1 + 1e-9)  # the filter's lead over the measured position
        expected = home + np.clip(rows, -0.1, 0.1)  # each row as a target, within that bound
        matched += bool(np.any(np.all(np.abs(expected - q) < 1e-4, axis=1)))
    assert matched >= 0.8 * len(r["traj"]), (matched, len(r["traj"]))
    assert runs.returncode == 0
