"""The captured per-frame path (frame_graph + InferenceSession), checked on the CPU with the
static-buffer backend: the same results as the eager forward frame after frame, one capture per
input signature (a same-length instruction reuses it), eager fallback when a capture fails, and
the bf16 precisions. The CUDA graph backend itself needs a GPU (the bench runs it there)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_align_ros.frame_graph import FrameGraph, StaticEagerBackend
from vla_align_ros.inference import InferenceSession
from vla_align_ros.paths import shipped_model

INSTRUCTIONS = ["put the red cube on the blue plate",
                "put the green cube on the blue plate",  # same token length as the first
                "pick up the green cube, then put it on the yellow plate"]


def _frames(n: int, width: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8),
             (rng.normal(size=width) * 0.1).astype(np.float32)) for _ in range(n)]


def _run(session: InferenceSession, frames: list, instructions: list[str]) -> list:
    out = []
    for text in instructions:
        session.set_instruction(text)
        for img, st in frames:
            r = session._step(img, st)  # noqa: SLF001 - the model call itself, no frame cache
            out.append((r.mask_logits.copy(), r.actions.copy(), r.step_probs.copy(), r.score, r.progress, r.step_index))
    return out


@pytest.fixture(scope="module")
def checkpoint() -> str:
    return str(shipped_model() / "checkpoint")


def test_static_replay_matches_eager_and_captures_once_per_signature(checkpoint):
    eager = InferenceSession(checkpoint)
    replayed = InferenceSession(checkpoint)
    replayed.graph = FrameGraph(StaticEagerBackend())
    frames = _frames(3, eager.model.cfg.action.state_width)
    a, b = _run(eager, frames, INSTRUCTIONS), _run(replayed, frames, INSTRUCTIONS)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-5)
    # different frames really give different outputs (the static inputs are refreshed)
    assert np.abs(a[0][0] - a[1][0]).max() > 1e-3
    st = replayed.graph_stats()
    # instructions 1 and 2 tokenise to the same lengths: one capture; the multi-step one: another
    assert st["captures"] == 2 and st["replays"] == 9 and st["fallbacks"] == 0, st


class _RefusingBackend:
    """A backend that cannot capture (as CUDA refuses an op that synchronises with the host)."""

    name = "refusing"

    def capture(self, fn, static_inputs):
        raise RuntimeError("operation not permitted when stream is capturing")


def test_a_failed_capture_runs_that_signature_eagerly_and_counts_it(checkpoint):
    events: list[str] = []
    eager = InferenceSession(checkpoint)
    s = InferenceSession(checkpoint)
    s.graph = FrameGraph(_RefusingBackend(), on_event=events.append)
    frames = _frames(2, s.model.cfg.action.state_width, seed=1)
    a, b = _run(eager, frames, INSTRUCTIONS[:1]), _run(s, frames, INSTRUCTIONS[:1])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x[1], y[1], atol=1e-6)
    st = s.graph_stats()
    assert st["captures"] == 0 and st["fallbacks"] == 2 and len(st["failures"]) == 1, st
    assert len(events) == 1 and "not permitted" in events[0]  # reported once, not per frame


def test_frame_graph_evicts_the_oldest_capture():
    g = FrameGraph(StaticEagerBackend(), max_entries=2)
    fn = lambda x: (x * 2,)  # noqa: E731
    for n in (1, 2, 3, 1):
        (y,) = g(("len", n), fn, torch.ones(n))
        assert torch.equal(y, torch.full((n,), 2.0))
    assert g.stats.captures == 4 and g.stats.evictions == 2


def test_bf16_precisions_follow_fp32(checkpoint):
    frames = _frames(2, 18)
    ref = _run(InferenceSession(checkpoint), frames, INSTRUCTIONS[:1])
    for precision in ("bf16_autocast", "bf16"):
        got = _run(InferenceSession(checkpoint, precision=precision), frames, INSTRUCTIONS[:1])
        for x, y in zip(ref, got):
            corr = np.corrcoef(x[0].ravel(), y[0].ravel())[0, 1]
            assert corr > 0.98, (precision, corr)
            assert np.abs(x[1] - y[1]).max() < 0.1 * (np.abs(x[1]).max() + 1e-3), precision


def test_graphs_need_cuda_and_precision_is_checked(checkpoint):
    with pytest.raises(ValueError, match="CUDA"):
        InferenceSession(checkpoint, graphs=True)
    with pytest.raises(ValueError, match="precision"):
        InferenceSession(checkpoint, precision="fp16")
    assert InferenceSession(checkpoint).graph_stats() is None  # off on a CPU
