"""ROS transport, measured between real processes over DDS.

``roundtrip``: a 640x480 rgb8 image to an echo process and back (reliable, depth 5).
``node``: an image into a running ``policy_node`` until its ActionChunk for that frame comes
back: the node's whole path (DDS in, conversion, model, chunk out) as a client sees it.

Each runs as its own process (``python -m vla_align_ros.benchmarks.ros_latency KIND ...``) so
the Fast DDS profile, read once per process, can differ between runs of one benchmark; the
result is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .stats import summary_ms

PING, PONG = "/vla_bench/ping", "/vla_bench/pong"
MODULE = "vla_align_ros.benchmarks.ros_latency"


def _qos() -> Any:
    from ..ros.qos import ROUND_TRIP_QOS

    return ROUND_TRIP_QOS


def _echo() -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("vla_bench_echo")
    pub = node.create_publisher(Image, PONG, _qos())
    node.create_subscription(Image, PING, pub.publish, _qos())
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


def _wait(node: Any, cond: Any, timeout: float) -> bool:
    import rclpy

    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        rclpy.spin_once(node, timeout_sec=0.01)
    return True


def image_roundtrip(frames: int, width: int = 640, height: int = 480) -> dict[str, Any]:
    import rclpy
    from sensor_msgs.msg import Image

    echo = subprocess.Popen([sys.executable, "-m", MODULE, "echo"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    rclpy.init()
    try:
        node = rclpy.create_node("vla_bench_ping")
        got: list[float] = []
        pub = node.create_publisher(Image, PING, _qos())
        node.create_subscription(Image, PONG, lambda m: got.append(time.perf_counter()), _qos())
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        msg.data = np.random.default_rng(0).integers(0, 256, height * width * 3, dtype=np.uint8).tobytes()
        if not _wait(node, lambda: pub.get_subscription_count() > 0 and node.count_publishers(PONG) > 0, 30):
            err = echo.stderr.read()[-1500:] if echo.poll() is not None else ""
            raise RuntimeError(f"the echo process was not discovered within 30 s {err}")
        lat, lost = [], 0
        for i in range(frames + 5):
            got.clear()
            t0 = time.perf_counter()
            pub.publish(msg)
            if not _wait(node, lambda: bool(got), 2.0):
                lost += 1
                continue
            if i >= 5:
                lat.append((got[0] - t0) * 1e3)
        return {"image": f"{width}x{height} rgb8", "round_trip_ms": summary_ms(lat), "lost": lost}
    finally:
        echo.send_signal(signal.SIGINT)
        try:
            echo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
        rclpy.try_shutdown()


def node_latency(checkpoint: str, frames: int, width: int = 640, height: int = 480,
                 torch_threads: int = 0) -> dict[str, Any]:
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from ..image_conv import array_to_image_fields
    from ..ros.closed_loop import Processes, node_command
    from ..robots.config import RobotConfig
    from ..ros.qos import CAMERA_QOS, INSTRUCTION_QOS, STREAM_QOS

    logs = Path(tempfile.mkdtemp(prefix="vla_bench_node_"))
    procs = Processes(logs)
    cmd = node_command("policy_node", {
        "checkpoint": checkpoint, "autostart": True, "torch_threads": torch_threads, "image_max_age_s": 5.0,
        # chunk: every frame runs the full model, the thing compared with the bare forward (the
        # affordance policy runs the model only until a step is located)
        "command_timeout_s": 5.0, "policy": "chunk"})
    procs.start("policy_node", cmd)
    rclpy.init()
    try:
        from vla_align_msgs.msg import ActionChunk

        node = rclpy.create_node("vla_bench_camera")
        sent: dict[tuple[int, int], float] = {}
        lat: list[float] = []
        status: list[dict] = []

        def on_chunk(m: Any) -> None:
            t = sent.pop((m.header.stamp.sec, m.header.stamp.nanosec), None)
            if t is not None:
                lat.append((time.perf_counter() - t) * 1e3)

        node.create_subscription(ActionChunk, "/policy_node/action_chunk", on_chunk, STREAM_QOS)
        node.create_subscription(String, "/policy_node/status", lambda m: status.append(json.loads(m.data)),
                                 STREAM_QOS)
        img_pub = node.create_publisher(Image, "/camera/image_raw", CAMERA_QOS)
        ins_pub = node.create_publisher(String, "/instruction", INSTRUCTION_QOS)
        js_pub = node.create_publisher(JointState, "/joint_states", STREAM_QOS)
        robot = RobotConfig.load("panda")  # the node's default robot: its arm joints, then the fingers
        js = JointState(name=robot.kinematics().arm_joints + list(robot.gripper_joints),
                        position=[0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8, 0.04, 0.04])
        from ..inference import InferenceSession
        from ..paths import checkpoint_dir
        from .frame import INSTRUCTION

        # The bare model on the same checkpoint in this process, one call after each node frame,
        # so both figures come from the same minutes of this shared machine.
        bare = InferenceSession(checkpoint_dir(checkpoint))
        bare.set_instruction(INSTRUCTION)
        bare_ms: list[float] = []
        ins_pub.publish(String(data=INSTRUCTION))
        arr = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = Image(**array_to_image_fields(arr, "rgb8"))
        state = np.asarray(js.position, dtype=np.float32)  # the joints standing still, as published
        if bare.model.cfg.action.velocity:
            state = np.r_[state, np.zeros_like(state)]
        if not _wait(node, lambda: img_pub.get_subscription_count() > 0 and node.count_publishers(
                "/policy_node/action_chunk") > 0, 120):
            procs.check()
            raise RuntimeError(f"policy_node did not come up within 120 s (log: {logs})")
        js_pub.publish(js)
        _wait(node, lambda: False, 1.0)
        lost = 0
        for i in range(frames + 5):
            js_pub.publish(js)
            stamp = node.get_clock().now().to_msg()
            msg.header.stamp = stamp
            key = (stamp.sec, stamp.nanosec)
            n = len(lat)
            sent[key] = time.perf_counter()
            img_pub.publish(msg)
            if not _wait(node, lambda: len(lat) > n, 5.0):
                lost += 1
                sent.pop(key, None)
            elif i < 5:
                lat.pop()  # warm-up frames
            _wait(node, lambda: False, 0.02)  # the node idles between frames, as at camera rate
            t0 = time.perf_counter()
            bare._step(arr, state)  # noqa: SLF001 - the bare forward
            if i >= 5:
                bare_ms.append((time.perf_counter() - t0) * 1e3)
            _wait(node, lambda: False, 0.02)
        status.clear()  # the next status covers every frame above
        _wait(node, lambda: bool(status), 3.0)
        node_model = status[-1].get("inference_ms_p50") if status else None
        e2e, model = summary_ms(lat), summary_ms(bare_ms)
        return {"image": f"{width}x{height} rgb8", "end_to_end_ms": e2e, "bare_model_ms": model, "lost": lost,
                "node_over_model_p50": round(e2e["p50"] / model["p50"], 3),
                "node_reported_model_ms_p50": node_model, "torch_threads": torch_threads}
    finally:
        procs.stop()
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vla_align_ros.benchmarks.ros_latency")
    ap.add_argument("kind", choices=["echo", "roundtrip", "node"])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--torch-threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.kind == "echo":
        return _echo()
    res = image_roundtrip(a.frames) if a.kind == "roundtrip" else node_latency(a.checkpoint, a.frames,
                                                                                 torch_threads=a.torch_threads)
    print(json.dumps(res))
    return 0


def run_in_process(kind: str, env: dict[str, str], timeout: float = 600, **kw: Any) -> dict[str, Any]:
    """Run one measurement as its own process with ``env``; its JSON line back as a dict."""
    cmd = [sys.executable, "-m", MODULE, kind] + [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({p.returncode}): {p.stderr[-1500:]}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
