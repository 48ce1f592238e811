"""The other side of the ROS battery tests: a camera, joint states, an instruction and an e-stop
going to policy_node, and everything it sends back recorded with arrival times. Run as
``python battery_probe.py SCENARIO``; prints one ``RESULT {json}`` line."""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
HOME = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785, 0.04, 0.04]
NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
INSTRUCTION = "pick up the red cube, then put it on the blue plate"


class Probe:
    def __init__(self, size: tuple[int, int] = (40, 48)) -> None:
        rclpy.init()
        self.n = Node("battery_probe")
        self.t0 = time.monotonic()
        self.twists: list[tuple[float, list[float]]] = []
        self.status: list[dict] = []
        self.chunks: list[tuple[float, float, float]] = []  # (arrival, its image stamp, wall clock at arrival)
        self.n.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self._on_twist, 10)
        self.n.create_subscription(String, "/policy_node/status", lambda m: self.status.append(json.loads(m.data)), 10)
        from vla_align_msgs.msg import ActionChunk

        self.n.create_subscription(ActionChunk, "/policy_node/action_chunk", lambda m: self.chunks.append(
            (self.now(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, time.time())), 10)
        self.img_pub = self.n.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        self.js_pub = self.n.create_publisher(JointState, "/joint_states", 10)
        self.ins_pub = self.n.create_publisher(String, "/instruction", LATCHED)
        self.estop_pub = self.n.create_publisher(Bool, "/estop", 10)
        self.reset_pub = self.n.create_publisher(Bool, "/estop_reset", 10)
        h, w = size
        self.image = Image(height=h, width=w, encoding="rgb8", step=w * 3)
        self.image.header.frame_id = "cam"
        self.image.data = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8).tobytes()
        self.camera = True
        self.estop_heartbeat = False
        self.stamp_offset = 0.0  # seconds added to image stamps (future/old frames)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _on_twist(self, m: TwistStamped) -> None:
        t = m.twist
        self.twists.append((self.now(), [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]))

    def publish_inputs(self) -> None:
        stamp = self.n.get_clock().now()
        if self.camera:
            ns = stamp.nanoseconds + int(self.stamp_offset * 1e9)
            self.image.header.stamp.sec, self.image.header.stamp.nanosec = ns // 10**9, ns % 10**9
            self.img_pub.publish(self.image)
        js = JointState(name=NAMES, position=HOME)
        js.header.stamp = stamp.to_msg()
        self.js_pub.publish(js)
        if self.estop_heartbeat:
            self.estop_pub.publish(Bool(data=False))

    def spin(self, sec: float, every: float = 0.05) -> None:
        end, nxt = time.monotonic() + sec, 0.0
        while time.monotonic() < end:
            if time.monotonic() >= nxt:
                self.publish_inputs()
                nxt = time.monotonic() + every
            rclpy.spin_once(self.n, timeout_sec=0.005)

    def spin_until(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not pred() and time.monotonic() < end:
            self.spin(0.1)
        return bool(pred())

    def call(self, srv_type, name: str, req):
        cli = self.n.create_client(srv_type, f"/policy_node/{name}")
        assert cli.wait_for_service(timeout_sec=60), f"no /policy_node/{name}"
        fut = cli.call_async(req)
        end = time.monotonic() + 60
        while not fut.done() and time.monotonic() < end:
            self.spin(0.05)
        return fut.result()

    def transition(self, tid: int) -> bool:
        return bool(self.call(ChangeState, "change_state", ChangeState.Request(transition=Transition(id=tid))).success)

    def state(self) -> str:
        return self.call(GetState, "get_state", GetState.Request()).current_state.label

    def start(self) -> dict:
        out = {"configure": self.transition(Transition.TRANSITION_CONFIGURE),
               "activate": self.transition(Transition.TRANSITION_ACTIVATE)}
        self.ins_pub.publish(String(data=INSTRUCTION))
        out["moving"] = self.spin_until(lambda: len(self.twists) >= 10, 30.0)
        return out

    def motion(self, since: float = 0.0) -> list[tuple[float, list[float]]]:
        return [(t, v) for t, v in self.twists if t >= since and any(x != 0.0 for x in v)]

    def zeros(self, since: float = 0.0) -> list[float]:
        return [t for t, v in self.twists if t >= since and all(x == 0.0 for x in v)]

    def finish(self, out: dict) -> None:
        out["twists"] = self.twists
        out["status"] = self.status[-1] if self.status else None
        print("RESULT " + json.dumps(out), flush=True)
        self.n.destroy_node()
        rclpy.shutdown()


def scenario_model_stops(p: Probe) -> dict:
    """1: the model stops answering: one hold within the command timeout, then silence."""
    out = p.start()
    out["moving"] = p.spin_until(lambda: len(p.chunks) >= 10, 30.0)
    # the fault node hangs after its 25th frame: wait until chunks stop coming
    p.spin_until(lambda: p.chunks and p.now() - p.chunks[-1][0] > 1.0, 30.0)
    out["last_chunk"] = p.chunks[-1][0]
    p.spin(2.5)
    out["status_stale"] = p.status[-1]["stale"] if p.status else None
    return out


def scenario_slow(p: Probe) -> dict:
    """3: inference (1 s a frame) slower than the watchdog period: the hold still comes on time."""
    out = p.start()
    p.spin(2.0)
    p.camera = False
    out["t_camera_off"] = p.now()
    p.spin(3.0)
    return out


def scenario_nan(p: Probe) -> dict:
    """4: every other chunk carries a NaN: dropped, a hold, counted; nothing non-finite goes out."""
    out = p.start()
    p.spin(4.0)
    return out


def scenario_fault(p: Probe) -> dict:
    """17: the model raises (or runs out of memory) after some frames: hold, deactivate, no loop."""
    out = p.start()
    p.spin_until(lambda: p.state() == "inactive", 30.0)
    out["t_inactive"] = p.now()
    p.spin(3.0)
    out["state_later"] = p.state()
    out["reactivate"] = p.transition(Transition.TRANSITION_ACTIVATE)  # the fault persists: deactivates again
    p.spin_until(lambda: p.state() == "inactive", 30.0)
    out["state_after_retry"] = p.state()
    return out


def scenario_inputs(p: Probe) -> dict:
    """2, 7, 14, 15 against one node: camera stop, e-stop heartbeat, bad stamps, QoS mismatch."""
    out = p.start()
    # 2: camera stops -> hold, status says stale, resumes only with fresh frames
    p.camera = False
    t_cam = p.now()
    p.spin(1.5)
    out["cam_zeros"], out["cam_motion_after"] = p.zeros(t_cam), p.motion(t_cam + 0.7)
    out["cam_status_stale"] = p.status[-1]["stale"] if p.status else None
    p.camera = True
    t_back = p.now()
    out["cam_resumed"] = p.spin_until(lambda: len(p.motion(t_back)) >= 5, 15.0)
    # 14: images stamped 10 s in the future, 5 s old, then out of order: none gives a chunk
    n_chunks = len(p.chunks)
    for offset in (10.0, -5.0):
        p.stamp_offset = offset
        p.spin(0.5)
    p.stamp_offset = 0.0
    out["bad_stamp_chunks"] = [c for c in p.chunks[n_chunks:] if abs(c[1] - c[2]) > 2.0]
    p.spin(1.2)
    out["stamp_drops"] = {k: v for k, v in (p.status[-1]["drops"] if p.status else {}).items() if k.startswith("image_")}
    # 15: a best-effort instruction publisher against the node's reliable subscription
    be = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    pub = p.n.create_publisher(String, "/instruction", be)
    p.spin(2.0)
    pub.publish(String(data="push the red cube to the left"))
    p.spin(1.5)
    out["qos_drops"] = (p.status[-1]["drops"] if p.status else {}).get("qos_incompatible", 0)
    return out


def scenario_estop_heartbeat(p: Probe) -> dict:
    """7: with a heartbeat required, a dead e-stop publisher counts as a stop; latched until reset."""
    p.estop_heartbeat = True
    out = p.start()
    p.estop_heartbeat = False  # the e-stop publisher dies
    t_dead = p.now()
    p.spin(2.0)
    out["zeros"], out["motion_after"] = p.zeros(t_dead), p.motion(t_dead + 1.0)
    p.estop_heartbeat = True  # alive again, but the latch holds until an explicit reset
    p.spin(1.0)
    out["motion_before_reset"] = p.motion(t_dead + 1.0)
    p.reset_pub.publish(Bool(data=True))
    t_reset = p.now()
    out["resumed"] = p.spin_until(lambda: len(p.motion(t_reset)) >= 5, 15.0)
    return out


def scenario_soak(p: Probe) -> dict:
    """16 (scaled): 640x480 frames at 30 Hz; latency and queue stay bounded."""
    out = p.start()
    t_soak = p.now()
    p.spin(float(sys.argv[2]) if len(sys.argv) > 2 else 15.0, every=1 / 30)
    lat = [wall - stamp for arrival, stamp, wall in p.chunks if arrival >= t_soak]
    out["chunks_in_soak"] = len(lat)
    out["latency_p50"], out["latency_p99"] = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if lat \
        else (math.nan, math.nan)
    return out


def scenario_security(p: Probe) -> dict:
    """25: require_security without SROS2 in the environment: activation is refused."""
    out = {"configure": p.transition(Transition.TRANSITION_CONFIGURE),
           "activate": p.transition(Transition.TRANSITION_ACTIVATE)}
    p.ins_pub.publish(String(data=INSTRUCTION))
    p.spin(1.0)
    return out


SCENARIOS = {"security": scenario_security, "model_stops": scenario_model_stops, "slow": scenario_slow, "nan": scenario_nan,
             "fault": scenario_fault, "inputs": scenario_inputs, "estop_heartbeat": scenario_estop_heartbeat,
             "soak": scenario_soak}

if __name__ == "__main__":
    name = sys.argv[1]
    probe = Probe((480, 640) if name == "soak" else (40, 48))
    probe.finish(SCENARIOS[name](probe))
