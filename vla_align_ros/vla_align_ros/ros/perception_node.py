"""``perception_node``: camera + instruction -> masks, grounding results, an overlay and task
progress, per frame.

A lifecycle node (configure loads the checkpoint, cleanup frees it, inactive publishes nothing).
The instruction is encoded once when it arrives (cached by text); each frame costs one vision
forward and the heads. In one process with ``policy_node`` both share one ``InferenceSession``
and the frame's result, so nothing is computed twice.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import String

from ..image_conv import array_to_image_fields
from .params import describe
from .model_node import ModelLifecycleNode, stamp_ns
from .process import run
from .qos import CAMERA_QOS, INSTRUCTION_QOS, STREAM_QOS
from .topics import PERCEPTION_TOPICS

OVERLAY_COLOUR = np.array([255, 0, 255], dtype=np.float32)


def overlay(image: np.ndarray, mask: np.ndarray, peak: tuple[int, int] | None = None, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 RGB + (H, W) bool -> the image with the mask tinted and its peak marked."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * OVERLAY_COLOUR
    if peak is not None:
        r, c = peak
        out[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = (255, 255, 255)
    return out.clip(0, 255).astype(np.uint8)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(H, W) bool -> (x, y, width, height) of its bounding box, None when empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


class PerceptionNode(ModelLifecycleNode):
    PUBLISHERS = ("pub_grounding", "pub_mask", "pub_overlay", "pub_progress", "pub_status")
    TOPICS = PERCEPTION_TOPICS

    def __init__(self, session: Any = None, name: str = "perception_node") -> None:
        super().__init__(name, session)
        p = self.declare_parameter
        self.p_overlay = p("publish_overlay", True, describe("publish the image with the mask drawn on it")).value
        self.p_image_age = p("image_max_age_s", 1.0, describe("an image older than this (by its stamp) is dropped",
                                                              lo=0.01, hi=60.0)).value
        self.frames = 0
        self.latency_ms: list[float] = []

    def _configure(self) -> TransitionCallbackReturn:
        self._check_transport()
        self._load_session()
        self._input_checks()
        from vla_align_msgs.msg import GroundingResult, TaskProgress

        t = self.t
        self.group = MutuallyExclusiveCallbackGroup()
        self.pub_grounding = self.create_lifecycle_publisher(GroundingResult, t["grounding"], STREAM_QOS)
        self.pub_mask = self.create_lifecycle_publisher(Image, t["mask"], CAMERA_QOS)
        self.pub_overlay = self.create_lifecycle_publisher(Image, t["overlay"], CAMERA_QOS)
        self.pub_progress = self.create_lifecycle_publisher(TaskProgress, t["progress"], STREAM_QOS)
        self.pub_status = self.create_lifecycle_publisher(String, t["status"], STREAM_QOS)
        self._sub_list = [
            self._image_subscription(t["image"], self._on_image, CAMERA_QOS, self.group),
            self.create_subscription(String, t["instruction"], self._on_instruction, INSTRUCTION_QOS,
                                     callback_group=self.group)]
        self._timer_list = [self._graph_timer()]
        self.get_logger().info(f"configured on {self.session.device}; camera: {self._sub_list[0].topic_name} "
                               f"({self.p_transport})")
        return TransitionCallbackReturn.SUCCESS

    def _instruction(self, text: str) -> None:
        if self.session.instruction is None or text != self.session.instruction.text:
            self.session.set_instruction(text)
            self.stamps.reset()

    def _frame_job(self, msg: Any, img: np.ndarray, t0: float) -> tuple[Any, np.ndarray, float]:
        return msg, img, t0

    def _process_frame(self, job: tuple[Image, np.ndarray, float]) -> None:
        """Inference thread: the model (or the result policy_node already got for this frame in a
        shared process), then masks, overlay and progress."""
        msg, img, t0 = job
        try:
            res = self.session.step(img, key=stamp_ns(msg.header.stamp))
        except Exception as e:  # noqa: BLE001 - never let a model failure escape
            self._inference_failed(e)
            return
        self._inference_ok()
        with self._state_lock:
            if not self._active:
                return
            self._publish(msg, img, res)
        self.frames += 1
        self.latency_ms.append((time.perf_counter() - t0) * 1e3)

    def _publish(self, msg: Image, img: np.ndarray, res: Any) -> None:
        from vla_align_msgs.msg import GroundingResult, TaskProgress

        enc = self.session.instruction
        mono = (res.mask.astype(np.uint8) * 255)
        mask_msg = Image(header=msg.header, **array_to_image_fields(mono, "mono8"))
        self.pub_mask.publish(mask_msg)
        g = GroundingResult()
        g.header = msg.header
        g.phrase = enc.steps[min(res.step_index, len(enc.steps) - 1)]
        g.score = float(res.score)
        box = mask_box(res.mask)
        if box is not None:
            g.bbox = RegionOfInterest(x_offset=box[0], y_offset=box[1], width=box[2], height=box[3])
        g.mask = mask_msg
        self.pub_grounding.publish(g)
        if self.p_overlay:
            self.pub_overlay.publish(Image(header=msg.header, **array_to_image_fields(overlay(img, res.mask, res.peak), "rgb8")))
        pr = TaskProgress()
        pr.header = msg.header
        pr.instruction = enc.text
        pr.steps = list(enc.steps)
        pr.active_step = int(res.step_index)
        pr.step_progress = float(res.progress)
        nan = float("nan")
        pr.segment_starts = [nan] * len(enc.steps)
        pr.segment_ends = [nan] * len(enc.steps)
        self.pub_progress.publish(pr)

    def _status(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms[-200:])
        return {"active": self._active, "frames": self.frames, "drops": self.drops, "type_mismatch": self.type_mismatch,
                "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
                "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None, "model": self._model_counts()}


def main() -> int:
    return run(PerceptionNode)


if __name__ == "__main__":
    sys.exit(main())
