"""Live inputs of perception_node and policy_node over DDS, in real processes:

- ``image_transport:=compressed``: jpeg CompressedImage frames on ``/camera/image_raw/compressed``
  drive both nodes (grounding results, action chunks); a corrupt one is a counted drop;
- publishers of the wrong type on subscribed topics (a String on the compressed camera topic
  and on /joint_states, an Image on /instruction) are found in the graph, logged once each and
  listed under ``type_mismatch`` on the status topics (this rmw raises no event for them);
- joint_states by name: shuffled with an extra joint drives the policy; one missing an arm joint
  is a counted drop.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import VENV_BIN, probe_result, ros_env

FEED = r"""
import json, time, rclpy
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, DurabilityPolicy, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import String
from vla_align_msgs.msg import ActionChunk, GroundingResult
from vla_align_ros.image_conv import array_to_compressed_fields

rclpy.init()
n = Node("feed_probe")
got = {"grounding": 0, "chunks": 0, "perception": {}, "policy": {}}
n.create_subscription(GroundingResult, "/perception_node/grounding", lambda m: got.__setitem__("grounding", got["grounding"] + 1), 10)
n.create_subscription(ActionChunk, "/policy_node/action_chunk", lambda m: got.__setitem__("chunks", got["chunks"] + 1), 10)
for node in ("perception", "policy"):
    n.create_subscription(String, f"/{node}_node/status", lambda m, k=node: got.__setitem__(k, json.loads(m.data)), 10)
img_pub = n.create_publisher(CompressedImage, "/camera/image_raw/compressed", qos_profile_sensor_data)
js_pub = n.create_publisher(JointState, "/joint_states", 10)
latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
ins_pub = n.create_publisher(String, "/instruction", latched)
rng = np.random.default_rng(0)
jpeg = array_to_compressed_fields(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), "jpeg")
HOME = dict(zip([f"panda_joint{i}" for i in range(1, 8)], [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]))
deadline = time.monotonic() + 150
while time.monotonic() < deadline and not (got["perception"].get("active") and got["policy"].get("active")):
    rclpy.spin_once(n, timeout_sec=0.1)
ins_pub.publish(String(data="pick up the red cube"))
sent, corrupt, missing = 0, 0, 0
end = time.monotonic() + 25; nxt = 0.0
def done():
    return (got["grounding"] >= 10 and got["chunks"] >= 10 and len(got["policy"].get("type_mismatch", {})) >= 3
            and len(got["perception"].get("type_mismatch", {})) >= 2
            and got["perception"].get("drops", {}).get("image_decode", 0) >= 1
            and got["policy"].get("drops", {}).get("joint_states", 0) >= 1)
while time.monotonic() < end and not done():
    if time.monotonic() >= nxt:
        stamp = n.get_clock().now().to_msg()
        m = CompressedImage(); m.header.stamp = stamp; m.header.frame_id = "cam"
        if sent % 10 == 5:  # a corrupt frame: jpeg bytes cut short and scrambled
            m.format, m.data = jpeg["format"], bytes(reversed(jpeg["data"][:200])); corrupt += 1
        else:
            m.format, m.data = jpeg["format"], jpeg["data"]
        img_pub.publish(m); sent += 1
        j = JointState(); j.header.stamp = stamp
        names = ["extra_joint", "panda_finger_joint2"] + list(reversed(list(HOME))) + ["panda_finger_joint1"]
        if sent % 10 == 7:  # one arm joint missing
            names.remove("panda_joint3"); missing += 1
        pos = {"extra_joint": 9.0, "panda_finger_joint1": 0.04, "panda_finger_joint2": 0.04, **HOME}
        j.name = names; j.position = [pos[k] for k in names]; js_pub.publish(j)
        nxt = time.monotonic() + 0.1
    rclpy.spin_once(n, timeout_sec=0.01)
got.update(sent=sent, corrupt=corrupt, missing=missing)
print("RESULT " + json.dumps(got), flush=True)
n.destroy_node(); rclpy.shutdown()
"""

WRONG_TYPES = r"""
import time, rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
rclpy.init()
n = Node("wrong_types")
pubs = [n.create_publisher(String, "/camera/image_raw/compressed", 10), n.create_publisher(String, "/joint_states", 10),
        n.create_publisher(Image, "/instruction", 10)]
end = time.monotonic() + float(__import__("sys").argv[1])
while time.monotonic() < end:
    pubs[0].publish(String(data="not an image")); pubs[1].publish(String(data="not joints"))
    rclpy.spin_once(n, timeout_sec=0.2)
n.destroy_node(); rclpy.shutdown()
"""


def test_compressed_frames_type_mismatches_and_joint_names_over_dds():
    from vla_align_ros.paths import shipped_model

    env = ros_env(48)
    common = ["-p", f"checkpoint:={shipped_model()}", "-p", "autostart:=true", "-p", "image_transport:=compressed"]
    nodes = {name: subprocess.Popen([str(VENV_BIN / name), "--ros-args", *common,
                                     *(["-p", "policy:=chunk", "-p", "robot:=panda_sim"] if name == "policy_node" else [])],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("perception_node", "policy_node")}
    wrong = subprocess.Popen([sys.executable, "-c", WRONG_TYPES, "200"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        probe = subprocess.run([sys.executable, "-c", FEED], env=env, capture_output=True, text=True, timeout=240)
    finally:
        wrong.kill()
        wrong.communicate(timeout=30)
        for p in nodes.values():
            p.send_signal(2)
        logs = {k: p.communicate(timeout=30)[0] for k, p in nodes.items()}
    r = probe_result(probe.stdout, probe.stderr, *logs.values())
    perception, policy = r["perception"], r["policy"]
    # compressed frames drive both nodes; the corrupt ones are counted drops
    assert r["grounding"] >= 10 and r["chunks"] >= 10, r
    assert perception["frames"] >= 10 and perception["drops"].get("image_decode", 0) >= 1, perception
    assert policy["drops"].get("image_decode", 0) >= 1, policy
    # wrong types found in the graph, by topic and type
    assert perception["type_mismatch"] == {"/camera/image_raw/compressed": ["std_msgs/msg/String"],
                                           "/instruction": ["sensor_msgs/msg/Image"]}, perception
    assert policy["type_mismatch"] == {"/camera/image_raw/compressed": ["std_msgs/msg/String"],
                                       "/instruction": ["sensor_msgs/msg/Image"],
                                       "/joint_states": ["std_msgs/msg/String"]}, policy
    for name, count in (("perception_node", 2), ("policy_node", 3)):
        errors = [line for line in logs[name].splitlines() if "type mismatch" in line]
        assert len(errors) == count, errors  # once per (topic, type), however long it lasts
    # joint_states by name: shuffled with an extra joint is used; a missing arm joint is a drop
    assert policy["drops"].get("joint_states", 0) >= 1 and r["missing"] >= 1
    assert "joint_states has no ['panda_joint3']" in logs["policy_node"]
    assert all(p.returncode == 0 for p in nodes.values()), {k: v[-1500:] for k, v in logs.items()}
    assert "(compressed)" in logs["perception_node"]
