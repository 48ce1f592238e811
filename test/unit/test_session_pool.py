"""Nodes of one process share one model (session_pool), and the session answers a frame once:
a second node's forward on the same frame is the first one's result, and a map look-up on that
frame reuses its vision features (the pair's one vision pass per camera frame)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_align_ros import session_pool
from vla_align_ros.paths import shipped_model


@pytest.fixture(scope="module")
def checkpoint() -> str:
    return str(shipped_model() / "checkpoint")


def test_same_checkpoint_and_device_share_one_session_until_the_last_release(checkpoint):
    a = session_pool.acquire(checkpoint, "cpu")
    b = session_pool.acquire(checkpoint + "/", "cpu")  # the same folder, spelled differently
    c = session_pool.acquire(checkpoint, "cpu", threads=1)  # other settings: its own
    try:
        assert a is b and c is not a and session_pool.holders(a) == 2
        assert session_pool.release(b) is False and session_pool.holders(a) == 1
        assert session_pool.release(a) is True and session_pool.holders(a) == 0
        with pytest.raises(RuntimeError):  # closed with its last holder
            a.submit(lambda: None)
    finally:
        session_pool.release(c)


def test_one_vision_pass_per_frame_for_perception_chunk_and_maps(checkpoint):
    s = session_pool.acquire(checkpoint, "cpu")
    try:
        s.set_instruction("put the red cube on the blue plate")
        rng = np.random.default_rng(3)
        state = np.zeros(s.model.cfg.action.state_width, np.float32)
        for frame in range(4):
            img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            seen = s.step(img, key=frame)  # perception_node
            again = s.step(img, state, key=frame)  # the chunk policy on the same frame
            assert again is seen
            fresh = s.locate_steps(img, ["the red cube"])  # no key: its own pass
            shared = s.locate_steps(img, ["the red cube"], key=frame)  # the affordance policy on the same frame
            assert shared == fresh
        assert s.vision_passes == 4 + 4 and s.frame_cache_hits == 4 and s.vision_reuses == 4
    finally:
        session_pool.release(s)


def test_the_frame_key_survives_a_captured_forward(checkpoint):
    """With a capture backend (as on CUDA) a map look-up on the frame just answered still reuses
    its vision features."""
    from vla_align_ros.frame_graph import FrameGraph, StaticEagerBackend
    from vla_align_ros.inference import InferenceSession

    s = InferenceSession(checkpoint)
    s.graph = FrameGraph(StaticEagerBackend())
    s.set_instruction("put the red cube on the blue plate")
    img = np.random.default_rng(4).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    s.step(img, key=11)
    assert s.locate_steps(img, ["the red cube"], key=11) == s.locate_steps(img, ["the red cube"])
    assert s.vision_reuses == 1 and s.graph_stats()["captures"] == 1
    s.close()
