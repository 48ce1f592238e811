"""/diagnostics over DDS: a model node started as its own process reports a DiagnosticStatus
under its fully qualified name, WARN while inactive and OK once a lifecycle manager (here an
outside probe calling its change_state service) has configured and activated it."""

from __future__ import annotations

import subprocess
import sys

from vla_align_ros.paths import shipped_model
from conftest import VENV_BIN, probe_result, ros_env


PROBE = r"""
import json, sys, time, rclpy
from rclpy.node import Node
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState

NAME = "/arm1/perception_node"
rclpy.init()
n = Node("diagnostics_probe")
seen = []  # (monotonic, level, message, values)
def on_diag(msg):
    for s in msg.status:
        if s.name == NAME:
            seen.append((time.monotonic(), s.level[0], s.message, {kv.key: kv.value for kv in s.values}))
n.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(n, timeout_sec=0.05)
        if pred():
            return True
    return False

def transition(tid):
    cli = n.create_client(ChangeState, NAME + "/change_state")
    assert cli.wait_for_service(timeout_sec=30)
    fut = cli.call_async(ChangeState.Request(transition=Transition(id=tid)))
    wait_for(fut.done, 120)
    return bool(fut.result().success)

out = {}
wait_for(lambda: len(seen) >= 1, 60)
out["unconfigured"] = seen[-1][1:] if seen else None
out["configure"] = transition(Transition.TRANSITION_CONFIGURE)
out["activate"] = transition(Transition.TRANSITION_ACTIVATE)
t = time.monotonic()
wait_for(lambda: seen[-1][0] > t, 10)
out["active"] = seen[-1][1:]
out["deactivate"] = transition(Transition.TRANSITION_DEACTIVATE)
t = time.monotonic()
wait_for(lambda: sum(s[0] > t for s in seen) >= 3, 10)
out["deactivated"] = seen[-1][1:]
gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:]) if b[0] > t]
out["gaps_after_deactivate"] = gaps
print("RESULT " + json.dumps(out), flush=True)
n.destroy_node(); rclpy.shutdown()
"""


def test_a_node_reports_inactive_then_active_on_diagnostics_under_its_namespace():
    env = ros_env(60)
    node = subprocess.Popen([str(VENV_BIN / "perception_node"), "--ros-args", "-r", "__ns:=/arm1",
                             "-p", f"checkpoint:={shipped_model()}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=240)
    finally:
        node.send_signal(2)
        log = node.communicate(timeout=30)[0]
    r = probe_result(probe.stdout, probe.stderr, log)
    level, message, values = r["unconfigured"]
    assert (level, message) == (1, "inactive") and values["active"] == "False" and values["frames"] == "0"
    assert r["configure"] and r["activate"]
    level, message, values = r["active"]
    assert (level, message, values["active"]) == (0, "active", "True")
    assert values["model.shared_by"] == "1"  # the status' counters come along as key/values
    assert r["deactivate"] and r["deactivated"][:2] == [1, "inactive"]
    assert len(r["gaps_after_deactivate"]) >= 2 and all(0.5 < g < 2.0 for g in r["gaps_after_deactivate"])  # one a second (configure's model load aside)
    assert node.returncode == 0, log[-2000:]
