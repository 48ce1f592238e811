"""What perception_node and policy_node share: a lifecycle node that loads the trained model on
configure (or uses one shared in-process), frees it on cleanup, publishes nothing while inactive,
and counts every drop with a throttled warning."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .params import describe


def checkpoint_dir(path: str) -> str:
    """A run folder or its ``checkpoint/`` folder -> the checkpoint folder."""
    p = Path(path)
    return str(p / "checkpoint") if (p / "checkpoint").is_dir() else str(p)


class ModelLifecycleNode(LifecycleNode):
    PUBLISHERS: tuple[str, ...] = ()  # attribute names of the lifecycle publishers, destroyed on cleanup

    def __init__(self, name: str, session: Any = None) -> None:
        super().__init__(name)
        p = self.declare_parameter
        self.p_checkpoint = p("checkpoint", "", describe("trained run folder or its checkpoint/ folder")).value
        self.p_device = p("device", "cpu", describe("torch device: cpu, cuda, cuda:N or auto")).value
        self.p_autostart = p("autostart", False, describe("configure and activate on start")).value
        self.p_threads = p("torch_threads", 0, describe("torch intra-op threads on CPU (0 = torch's default, one "
                                                        "per core); fewer leaves cores to the executor and DDS",
                                                        lo=0, hi=256, integer=True)).value
        self._shared_session = session
        self.session: Any = None
        self._active = False
        # Held while commands go out and while the node stops: nothing is published after the
        # last hold of a deactivate (the control timer runs in another thread).
        self._state_lock = threading.RLock()
        self._sub_list: list = []
        self._timer_list: list = []
        self.drops: dict[str, int] = {}
        self._frame_lock = threading.Lock()
        self._pending: Any = None  # the newest frame waiting for the inference thread
        self._draining = False

    def _drop(self, reason: str, message: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self.get_logger().warning(f"dropped ({reason}, #{self.drops[reason]}): {message}", throttle_duration_sec=2.0)

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
        from ..inference import InferenceSession

        if self.p_threads > 0:
            import torch

            torch.set_num_threads(self.p_threads)
        self.session = InferenceSession(checkpoint_dir(self.p_checkpoint), self.p_device)

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
            self.session.close()
        self.session = None  # the last reference to an owned model: its memory is freed
        if on_cuda:
            import torch

            torch.cuda.empty_cache()
        self._active = False
