"""The per-frame path inside one process, stage by stage: message -> array (conversion), vision
encoder (encode), grounding + temporal + policy heads and the read-back (heads), safety filter
(safety), and building + publishing the ActionChunk and the twist (publish)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..control import TwistLimits, filter_twist
from ..image_conv import array_to_image_fields, image_to_array
from ..inference import InferenceSession
from .stats import summary_ms

INSTRUCTION = "pick up the red cube, then put it on the blue plate"


def _image_msg(height: int, width: int, seed: int = 0) -> Any:
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = Image(**array_to_image_fields(arr, "rgb8"))
    msg.header.frame_id = "camera"
    return msg


def frame_latency(session: InferenceSession, image_hw: tuple[int, int] = (480, 640), frames: int = 50,
                  warmup: int = 5, node: Any = None) -> dict[str, Any]:
    """Latency per stage (ms, p50/p90/p99) over ``frames`` frames after ``warmup``. ``node``: an
    rclpy node to publish from (the publish stage is skipped without one)."""
    msg = _image_msg(*image_hw)
    session.set_instruction(INSTRUCTION)
    state = np.zeros(session.model.cfg.action.state_width, dtype=np.float32)
    limits = TwistLimits(0.25, 1.0, 0.08, 0.4, (0.25, -0.35, 0.045), (0.75, 0.35, 0.45))
    ee = np.array([0.5, 0.0, 0.3])
    pubs = None
    if node is not None:
        from geometry_msgs.msg import TwistStamped
        from vla_align_msgs.msg import ActionChunk

        pubs = (node.create_publisher(ActionChunk, "~/bench_chunk", 10), node.create_publisher(TwistStamped, "~/bench_twist", 1),
                ActionChunk, TwistStamped)
    stages: dict[str, list[float]] = {k: [] for k in ("conversion", "encode", "heads", "model", "safety", "publish", "total")}
    prev = None
    for i in range(warmup + frames):
        t0 = time.perf_counter()
        img = image_to_array(msg)
        t1 = time.perf_counter()
        res = session._step(img, state)  # noqa: SLF001 - the bare model call, no frame cache
        t2 = time.perf_counter()
        r = filter_twist(res.actions[0, :6], ee, prev, limits, 0.05)
        prev = r.command
        t3 = time.perf_counter()
        if pubs is not None:
            chunk_pub, twist_pub, ActionChunk, TwistStamped = pubs
            m = ActionChunk()
            m.header = msg.header
            m.action_space = "ee_twist"
            m.horizon = int(res.actions.shape[0])
            m.data = res.actions.astype(np.float32).reshape(-1).tolist()
            chunk_pub.publish(m)
            tw = TwistStamped()
            (tw.twist.linear.x, tw.twist.linear.y, tw.twist.linear.z, tw.twist.angular.x, tw.twist.angular.y,
             tw.twist.angular.z) = (float(v) for v in r.command)
            twist_pub.publish(tw)
        t4 = time.perf_counter()
        if i < warmup:
            continue
        stages["conversion"].append((t1 - t0) * 1e3)
        stages["encode"].append(session.last_timing["encode_ms"])
        stages["heads"].append(session.last_timing["heads_ms"])
        stages["model"].append((t2 - t1) * 1e3)
        stages["safety"].append((t3 - t2) * 1e3)
        if pubs is not None:
            stages["publish"].append((t4 - t3) * 1e3)
        stages["total"].append((t4 - t0) * 1e3)
    out: dict[str, Any] = {"image": f"{image_hw[1]}x{image_hw[0]} rgb8", "frames": frames,
                           "stages_ms": {k: summary_ms(v) for k, v in stages.items() if v}}
    total = out["stages_ms"]["total"]["p50"]
    out["fps"] = round(1e3 / total, 1) if total > 0 else None
    out["in_process_over_model_p50"] = round(total / out["stages_ms"]["model"]["p50"], 3)
    return out
