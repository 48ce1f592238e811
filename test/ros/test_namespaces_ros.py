"""Two arms on one ROS domain: `ros2 launch vla_align_ros sim_demo.launch.py namespace:=arm1` and
`namespace:=arm2` (simulator + perception + policy each, 96x96 images). Each policy drives its own
arm only, on its own /armN/... topics, from its own arm's instruction; nothing is published in the
root namespace; /diagnostics carries all six nodes under their namespaced names; launch drove
both model nodes of each arm through configure and activate; Ctrl-C leaves each arm on a hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import VENV_BIN

ROS2 = VENV_BIN / "ros2"
ARMS = {"arm1": 5000, "arm2": 5003}  # namespace -> seed of its first episode (different tasks)

pytestmark = pytest.mark.skipif(not ROS2.is_file(), reason=f"{ROS2} is missing: the ros2-launch kit "
                                "(../shared/ros2-launch) is not installed, so `ros2 launch` cannot run here")

WATCH = r"""
import json, sys, threading, time, rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, DurabilityPolicy, ReliabilityPolicy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from std_msgs.msg import String
ARMS = sys.argv[1:]
rclpy.init()
n = Node("two_arm_watch")
latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
got = {a: {"twists": [], "task": None, "plan": None, "ee": []} for a in ARMS}
diag = {}
for a in ARMS:
    g = got[a]
    n.create_subscription(TwistStamped, f"/{a}/servo_node/delta_twist_cmds", lambda m, g=g: g["twists"].append(
        sum(abs(v) for v in (m.twist.linear.x, m.twist.linear.y, m.twist.linear.z,
                             m.twist.angular.x, m.twist.angular.y, m.twist.angular.z))), 10)
    n.create_subscription(String, f"/{a}/ground_truth/task", lambda m, g=g: g.__setitem__(
        "task", json.loads(m.data)["instruction"]), latched)
    n.create_subscription(String, f"/{a}/policy_node/status", lambda m, g=g: g.__setitem__(
        "plan", json.loads(m.data)["plan"]), 10)
    n.create_subscription(PoseStamped, f"/{a}/ground_truth/ee_pose", lambda m, g=g: g["ee"].append(
        (m.pose.position.x, m.pose.position.y, m.pose.position.z)), 10)
n.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.update(
    {s.name: (s.level[0], s.message) for s in m.status}), 10)

def ready():
    return all(sum(v > 0.02 for v in g["twists"]) >= 10 and g["task"] and g["plan"] for g in got.values())

def graph():
    out = {}
    for a in ARMS:
        for t in ("servo_node/delta_twist_cmds", "camera/image_raw", "joint_states", "instruction"):
            topic = f"/{a}/{t}"
            out[topic] = {"pub": sorted({i.node_namespace for i in n.get_publishers_info_by_topic(topic)}),
                          "sub": sorted({i.node_namespace for i in n.get_subscriptions_info_by_topic(topic)} - {"/"})}
    for t in ("/servo_node/delta_twist_cmds", "/camera/image_raw", "/joint_states", "/instruction"):
        out[t] = {"pub": [i.node_namespace for i in n.get_publishers_info_by_topic(t)]}
    return out

done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
t0 = time.monotonic(); announced = False; snap = {}
while not done.is_set():
    rclpy.spin_once(n, timeout_sec=0.05)
    if not announced and ready():
        snap = {"ready_s": time.monotonic() - t0, "graph": graph(), "diag": dict(diag),
                "moving": {a: sum(v > 0.02 for v in g["twists"]) for a, g in got.items()}}
        print("READY", flush=True); announced = True
print("RESULT " + json.dumps({**snap, "task": {a: g["task"] for a, g in got.items()},
      "plan": {a: g["plan"] for a, g in got.items()}, "last": {a: g["twists"][-1] if g["twists"] else None
      for a, g in got.items()}, "ee": {a: [g["ee"][0], g["ee"][-1]] if g["ee"] else None for a, g in got.items()}}),
      flush=True)
"""


def _reset_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _session_pids(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--sid", str(sid)], capture_output=True, text=True).stdout
    return out.split()


def test_two_namespaced_arms_on_one_domain_each_drive_their_own_arm(tmp_path):
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(int(env.get("ROS_DOMAIN_ID", "150")) % 100 + 64)
    env.update(ROS_LOG_DIR=str(tmp_path / "ros_log"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    watch = subprocess.Popen([sys.executable, "-c", WATCH, *ARMS], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(watch.stdout.readline, "")), daemon=True).start()
    launches = {a: subprocess.Popen([str(ROS2), "launch", "vla_align_ros", "sim_demo.launch.py", f"namespace:={a}",
                                     f"seed:={seed}", "image_size:=96"], env=env, cwd=tmp_path,
                                    stdout=(tmp_path / f"{a}.log").open("w"), stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_reset_sigint)
                for a, seed in ARMS.items()}
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 200 and "READY\n" not in lines and all(p.poll() is None for p in launches.values()):
            time.sleep(0.2)
        for p in launches.values():
            p.send_signal(signal.SIGINT)
        codes = {a: p.wait(timeout=60) for a, p in launches.items()}
    finally:
        for p in launches.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        time.sleep(1.0)
        watch.stdin.write("end\n")
        watch.stdin.flush()
        watch.wait(timeout=30)
    logs = {a: (tmp_path / f"{a}.log").read_text() for a in ARMS}
    assert "READY\n" in lines, {a: text[-3000:] for a, text in logs.items()}
    r = json.loads([line for line in lines if line.startswith("RESULT ")][-1][len("RESULT "):])
    print(json.dumps({"ready_s": round(r["ready_s"], 1), "moving": r["moving"], "task": r["task"]}))
    # each arm's instruction is its own simulator's task, and its own policy planned for it
    assert r["task"]["arm1"] != r["task"]["arm2"], r["task"]
    assert all(r["plan"][a].endswith(f" over {r['task'][a]}") for a in ARMS), (r["plan"], r["task"])
    # no cross-talk: each arm's topics are published and subscribed in its namespace only, and
    # nothing goes out on the root namespace's names
    for a in ARMS:
        g = r["graph"]
        assert g[f"/{a}/servo_node/delta_twist_cmds"] == {"pub": [f"/{a}"], "sub": [f"/{a}"]}, g
        assert g[f"/{a}/camera/image_raw"] == {"pub": [f"/{a}"], "sub": [f"/{a}"]}, g
        assert g[f"/{a}/joint_states"]["pub"] == [f"/{a}"] and g[f"/{a}/instruction"]["pub"] == [f"/{a}"], g
    assert all(r["graph"][t]["pub"] == [] for t in ("/servo_node/delta_twist_cmds", "/camera/image_raw",
                                                    "/joint_states", "/instruction")), r["graph"]
    # both arms moved (end effector, m) and each stopped on a hold
    for a in ARMS:
        first, last = r["ee"][a]
        assert sum((x - y) ** 2 for x, y in zip(first, last)) ** 0.5 > 0.02, (a, r["ee"][a])
        assert r["last"][a] == 0.0, r["last"]
    # /diagnostics: every node of both arms under its namespaced name
    names = set(r["diag"])
    assert {f"/{a}/{n}" for a in ARMS for n in ("sim_node", "perception_node", "policy_node")} <= names, names
    assert all(r["diag"][f"/{a}/policy_node"][0] in (0, 1) for a in ARMS), r["diag"]
    # launch, not the nodes themselves, configured and activated the model nodes (autostart false)
    for a, text in logs.items():
        for node in ("perception_node", "policy_node"):
            assert f"launch lifecycle: {node} configured, requesting activate" in text, text[-3000:]
            assert f"launch lifecycle: {node} is active" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
    assert codes == {a: 0 for a in ARMS} and not any(_session_pids(p.pid) for p in launches.values()), logs
