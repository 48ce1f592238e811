"""What perception_node and policy_node share: a lifecycle node that loads the trained model on
configure (or uses one shared in-process), frees it on cleanup, publishes nothing while inactive,
counts every drop with a throttled warning, reports its status every second (a
DiagnosticStatus on /diagnostics, from unconfigured on; the detailed JSON on ``~/status`` while
active), and watches the graph for publishers of the wrong message type on the topics it
subscribes to (this rclpy/rmw stack raises no event for them: the two sides simply never match,
and the node would wait for data that cannot arrive)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import String

from ..image_conv import ImageError
from ..paths import checkpoint_dir
from ..text_input import InstructionError
from .diagnostics import STATUS_PERIOD_S, DiagnosticsPublisher, snapshot
from .params import describe

IMAGE_TRANSPORTS = ("raw", "compressed")
DROP_LOG_S = 2.0  # a drop reason is logged at most this often (each one is counted)
GRAPH_CHECK_S = 2.0  # how often the subscribed topics' publishers are checked for their type


def stamp_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time -> nanoseconds. A frame's header stamp in ns is also its key in
    the shared session's frame cache, so perception and policy must derive it alike."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def type_name(msg_type: Any) -> str:
    """A message class -> its ROS type name, e.g. ``sensor_msgs/msg/Image``."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


class ModelLifecycleNode(LifecycleNode):
    PUBLISHERS: tuple[str, ...] = ()  # attribute names of the lifecycle publishers, destroyed on cleanup
    TOPICS: dict[str, str] = {}  # topics.<key> parameter defaults (ros/topics.py)

    def __init__(self, name: str, session: Any = None) -> None:
        super().__init__(name)
        p = self.declare_parameter
        self.t = {k: p(f"topics.{k}", v, describe(f"topic: {k}")).value for k, v in self.TOPICS.items()}
        self.p_checkpoint = p("checkpoint", "", describe("trained run folder or its checkpoint/ folder")).value
        self.p_device = p("device", "cpu", describe("torch device: cpu, cuda, cuda:N or auto")).value
        self.p_autostart = p("autostart", False, describe(
            "configure and activate on start (plain ros2 run); launch files set it false and drive the "
            "transitions themselves")).value
        self.p_max_errors = p("max_inference_errors", 3, describe(
            "consecutive model failures after which the node holds and deactivates itself (an out-of-memory "
            "error: at once)", lo=1, hi=1000, integer=True)).value
        self.p_transport = p("image_transport", "raw", describe(
            "how camera frames arrive, named as image_transport names them: 'raw' (sensor_msgs/Image on "
            "topics.image) or 'compressed' (sensor_msgs/CompressedImage, jpeg or png, on topics.image + "
            "'/compressed')")).value
        self.p_threads = p("torch_threads", 0, describe("torch intra-op threads on CPU (0 = torch's default, one "
                                                        "per core); fewer leaves cores to the executor and DDS",
                                                        lo=0, hi=256, integer=True)).value
        self.p_future = p("image_max_future_s", 0.1, describe(
            "an image stamped further ahead of this node's clock is dropped (clock skew)", lo=0.0, hi=10.0)).value
        self.p_instr_interval = p("instruction_min_interval_s", 0.2, describe(
            "a different instruction sooner than this after the last change is refused (rate limit)",
            lo=0.0, hi=10.0)).value
        self._shared_session = session
        self.session: Any = None
        self._active = False
        # Held while commands go out and while the node stops: nothing is published after the
        # last hold of a deactivate (the control timer runs in another thread).
        self._state_lock = threading.RLock()
        self._sub_list: list = []
        self._timer_list: list = []
        self.drops: dict[str, int] = {}
        self._drop_logged: dict[str, float] = {}  # reason -> monotonic time of its last warning
        self._frame_lock = threading.Lock()
        self._pending: Any = None  # the newest frame waiting for the inference thread
        self._draining = False
        self._errors_in_row = 0
        self._fault: str | None = None
        # The inference thread reports a fault through this; the executor thread deactivates.
        self._fault_gc = self.create_guard_condition(self._on_fault)
        # topic -> the wrong types seen publishing on it (since configure), for the status topic
        self.type_mismatch: dict[str, list[str]] = {}
        # Not a lifecycle publisher and not torn down on cleanup: an inactive node reports that too.
        self.diagnostics = DiagnosticsPublisher(self)
        self._status_timer = self.create_timer(STATUS_PERIOD_S, self._publish_status)

    # ---- status ---------------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        """The node's detailed status (``~/status`` JSON; ``diagnostics.diagnose`` reads it too)."""
        raise NotImplementedError

    def _publish_status(self) -> None:
        """The status on /diagnostics always, and as JSON on ``~/status`` while active."""
        status = snapshot(self._status())
        self.diagnostics.publish(status)
        if self._active and hasattr(self, "pub_status"):
            self.pub_status.publish(String(data=json.dumps(status)))

    # ---- inputs: instruction and camera frames ---------------------------------------------------
    def _on_instruction(self, msg: String) -> None:
        """The instruction topic: rate-limited and validated (``self.gate``, an InstructionGate built
        on configure), then ``_instruction``; a refused one is a counted drop."""
        if self.session is None:
            return
        try:
            self._instruction(self.gate.accept(msg.data, time.monotonic()))
        except InstructionError as e:
            self._drop(f"instruction_{e.reason}", str(e))

    def _input_checks(self) -> None:
        """On configure: the image stamp filter (``image_max_age_s``, ``image_max_future_s``) and
        the instruction gate (``instruction_min_interval_s``)."""
        from ..control.freshness import StampFilter
        from ..text_input import InstructionGate

        self.stamps = StampFilter(self.p_image_age, self.p_future)
        self.gate = InstructionGate(self.p_instr_interval)

    def _instruction(self, text: str) -> None:
        """An accepted instruction (may raise ``InstructionError``: a drop)."""
        raise NotImplementedError

    def _on_image(self, msg: Any) -> None:
        """Executor thread: a camera frame (an Image, or a CompressedImage with image_transport
        'compressed') converted and checked, then handed to the inference thread as
        ``_frame_job``. Nothing while inactive or without an instruction; a frame that cannot be
        read, is not colour, or is stale is a counted drop."""
        if not self._active or self.session is None or self.session.instruction is None:
            return
        t0 = time.perf_counter()
        try:
            img = self._frame_array(msg)
        except ImageError as e:
            self._drop(f"image_{e.reason}", str(e))
            return
        if img.ndim != 3 or img.shape[2] != 3:
            self._drop("image_encoding", f"{self.get_name()} needs a colour image, got {self._frame_encoding(msg)}")
            return
        if not self._fresh(msg.header.stamp):
            return
        self._submit_frame(self._frame_job(msg, img, t0))

    def _frame_job(self, msg: Any, img: Any, t0: float) -> Any:
        """What the inference thread's ``_process_frame`` gets for a frame received at ``t0``
        (perf_counter)."""
        raise NotImplementedError

    def _image_subscription(self, topic: str, callback: Any, qos: Any, group: Any = None, **kwargs: Any) -> Any:
        """The camera subscription of ``image_transport``: Image on ``topic``, or CompressedImage
        on ``topic/compressed`` (``_check_transport`` has run on configure). ``callback`` gets either
        message; ``_frame_array`` decodes both."""
        if self.p_transport == "raw":
            from sensor_msgs.msg import Image

            return self.create_subscription(Image, topic, callback, qos, callback_group=group, **kwargs)
        from sensor_msgs.msg import CompressedImage

        return self.create_subscription(CompressedImage, f"{topic.rstrip('/')}/compressed", callback, qos,
                                        callback_group=group, **kwargs)

    def _check_transport(self) -> None:
        """``image_transport`` is one of IMAGE_TRANSPORTS (checked on configure, before anything is created)."""
        if self.p_transport not in IMAGE_TRANSPORTS:
            raise ValueError(f"image_transport={self.p_transport!r}: use one of {IMAGE_TRANSPORTS}")

    @staticmethod
    def _frame_array(msg: Any) -> Any:
        """An Image or a CompressedImage -> (H, W, C) array (RGB for colour); ``ImageError`` when
        it cannot be read (the caller counts the drop)."""
        from ..image_conv import compressed_to_array, image_to_array

        return compressed_to_array(msg) if hasattr(msg, "format") else image_to_array(msg)

    @staticmethod
    def _frame_encoding(msg: Any) -> str:
        return msg.format if hasattr(msg, "format") else msg.encoding

    # ---- the graph: publishers of the wrong type -------------------------------------------------
    def _graph_timer(self, group: Any = None) -> Any:
        """A slow timer that checks the publishers on every subscribed topic (add it to ``_timer_list``)."""
        self.type_mismatch = {}
        return self.create_timer(GRAPH_CHECK_S, self._check_graph, callback_group=group)

    def _check_graph(self) -> None:
        """Each subscription's topic: any publisher whose type is not the subscription's is logged
        once per (topic, type) and listed in ``type_mismatch``."""
        for sub in list(self._sub_list):
            expected = type_name(sub.msg_type)
            topic = sub.topic_name
            try:
                infos = self.get_publishers_info_by_topic(topic)
            except Exception:  # noqa: BLE001 - a graph query failing (shutting down) is no reason to stop
                return
            for info in infos:
                if info.topic_type == expected:
                    continue
                seen = self.type_mismatch.setdefault(topic, [])
                if info.topic_type not in seen:
                    seen.append(info.topic_type)
                    self.get_logger().error(
                        f"{topic}: node {info.node_namespace.rstrip('/')}/{info.node_name} publishes "
                        f"{info.topic_type}, but this node subscribes to {expected}: nothing it sends arrives "
                        f"here (type mismatch; reported once)")

    def _drop(self, reason: str, message: str) -> None:
        """Count a drop by reason and warn, at most every ``DROP_LOG_S`` per reason (one
        throttle for all reasons would let a frequent drop hide every other kind)."""
        self.drops[reason] = self.drops.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._drop_logged.get(reason, -DROP_LOG_S) >= DROP_LOG_S:
            self._drop_logged[reason] = now
            self.get_logger().warning(f"dropped ({reason}, #{self.drops[reason]}): {message}")

    def _fresh(self, stamp: Any) -> bool:
        """Whether an image's header stamp passes ``self.stamps`` (a StampFilter the node builds
        on configure); a stamp in the future, too old or out of order is a counted drop."""
        reason = self.stamps.check(stamp_ns(stamp), self.get_clock().now().nanoseconds)
        if reason is not None:
            self._drop(f"image_{reason}", f"image stamped {stamp.sec}.{stamp.nanosec:09d}: {reason.replace('_', ' ')}")
        return reason is None

    # ---- faults and QoS events -------------------------------------------------------------------
    def _inference_failed(self, e: BaseException) -> None:
        """Inference thread: count a model failure; after ``max_inference_errors`` in a row, or
        at once when the device ran out of memory, ask the executor thread to stop the node."""
        self._drop("inference_error", f"{type(e).__name__}: {e}")
        self._errors_in_row += 1
        oom = "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"
        if (oom or self._errors_in_row >= self.p_max_errors) and self._fault is None:
            self._fault = f"{'out of memory' if oom else f'{self._errors_in_row} model failures in a row'}: " \
                          f"{type(e).__name__}: {e}"
            self._fault_gc.trigger()

    def _model_counts(self) -> dict[str, Any] | None:
        """The session's vision passes, frames answered from another node's forward, vision
        features reused, CUDA graph counts and how many nodes of this process share it."""
        s = self.session
        if s is None:
            return None
        from .. import session_pool

        return {"vision_passes": s.vision_passes, "frame_cache_hits": s.frame_cache_hits,
                "vision_reuses": s.vision_reuses, "graphs": s.graph_stats(), "shared_by": session_pool.holders(s)}

    def _inference_ok(self) -> None:
        self._errors_in_row = 0

    def _on_fault(self) -> None:
        if self._fault is None or not self._active:
            return
        self.get_logger().error(f"deactivating: {self._fault}; fix the cause, then activate again")
        self.trigger_deactivate()  # on_deactivate sends the one hold

    def _qos_events(self, topic: str, publisher: bool) -> Any:
        """Event callbacks that log and count an incompatible QoS on ``topic`` (a best-effort
        publisher against a reliable subscription and the like connect silently otherwise)."""
        from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks

        def incompatible(info: Any) -> None:
            self.drops["qos_incompatible"] = self.drops.get("qos_incompatible", 0) + 1
            side = "subscriber" if publisher else "publisher"
            self.get_logger().warning(f"{topic}: a {side} with incompatible QoS cannot connect (policy id "
                                      f"{info.last_policy_kind}, {info.total_count} so far)", throttle_duration_sec=5.0)

        if publisher:
            return PublisherEventCallbacks(incompatible_qos=incompatible)
        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    # ---- frames: newest first, on the session's inference thread -------------------------------
    def _submit_frame(self, job: Any) -> None:
        """Hand a frame to the inference thread and return at once: the executor never waits on
        the model, so timers and the watchdog keep their rate. A frame still waiting when a
        newer one arrives is superseded (counted as ``frame_superseded``)."""
        with self._frame_lock:
            if self._pending is not None:
                self.drops["frame_superseded"] = self.drops.get("frame_superseded", 0) + 1
            self._pending = job
            if self._draining:
                return
            self._draining = True
        try:
            self.session.submit(self._drain_frames)
        except RuntimeError as e:  # the session closed under us (cleanup)
            with self._frame_lock:
                self._pending, self._draining = None, False
            self._drop("session_closed", str(e))

    def _drain_frames(self) -> None:
        while True:
            with self._frame_lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._draining = False
                    return
            try:
                self._process_frame(job)
            except Exception as e:  # noqa: BLE001 - the inference thread must survive anything
                self._drop("frame_error", f"{type(e).__name__}: {e}")

    def _process_frame(self, job: Any) -> None:
        """Runs on the inference thread: the model on one frame, then publishing."""
        raise NotImplementedError

    def _load_session(self) -> None:
        if self._shared_session is not None:
            self.session = self._shared_session
            return
        if not self.p_checkpoint:
            raise ValueError("parameter 'checkpoint' is empty: give a trained run folder")
        from .. import session_pool

        # Nodes of one process on the same checkpoint and device share one session: one copy of
        # the weights, one inference thread, and one vision pass per frame (the frame cache).
        self.session = session_pool.acquire(checkpoint_dir(self.p_checkpoint), self.p_device, threads=self.p_threads)
        if session_pool.holders(self.session) > 1:
            self.get_logger().info("sharing the model with another node of this process")

    # ---- lifecycle ------------------------------------------------------------------------------
    def _configure(self) -> TransitionCallbackReturn:
        raise NotImplementedError

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return self._configure()
        except Exception as e:  # noqa: BLE001 - any failure is a failed configure, with the reason logged
            self.get_logger().error(f"configure failed: {type(e).__name__}: {e}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._fault, self._errors_in_row = None, 0
        self._active = True
        return super().on_activate(state)

    def _before_stop(self, why: str) -> None:
        """Called while the publishers are still active, before deactivate or shutdown."""

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            self._before_stop("deactivated")
            self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            if self._active:
                self._before_stop("shutdown")
            self._active = False
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        for s in self._sub_list:
            self.destroy_subscription(s)
        for tm in self._timer_list:
            self.destroy_timer(tm)
        for name in self.PUBLISHERS:
            if hasattr(self, name):
                self.destroy_publisher(getattr(self, name))
                delattr(self, name)
        self._sub_list, self._timer_list = [], []
        owned = self.session is not None and self.session is not self._shared_session
        on_cuda = owned and self.session.device.type == "cuda"
        if owned:
            from .. import session_pool

            owned = session_pool.release(self.session)  # False while another node still holds it
        self.session = None  # the last reference to an owned model: its memory is freed
        if owned:
            self.get_logger().info("model released")
        if on_cuda:
            import torch

            torch.cuda.empty_cache()
        self._active = False
