"""Replay of the per-frame forward from static buffers: capture once per input signature (the
frame's device shape, the instruction's token lengths, which optional inputs are present), then
per frame copy the new inputs into the captured buffers and replay.

On CUDA the capture is a CUDA graph (``CudaGraphBackend``): one launch per frame instead of a
few hundred kernel launches from Python. ``StaticEagerBackend`` keeps the same contract (static
input buffers, the same output tensors returned every call) but re-runs the function eagerly;
it is what runs on a CPU and what the CPU tests exercise. A capture that fails falls back to the
eager function for that signature; captures, replays, fallbacks and their reasons are counted.

Inputs that are the same tensor object as last time (the cached instruction's encodings) are
not copied again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Protocol, Sequence

import torch
from torch import Tensor

FrameFn = Callable[..., tuple[Tensor, ...]]


class CaptureBackend(Protocol):
    name: str

    def capture(self, fn: FrameFn, static_inputs: Sequence[Tensor]) -> tuple[Callable[[], None], tuple[Tensor, ...]]:
        """-> (replay, outputs): ``replay()`` recomputes ``outputs`` in place from ``static_inputs``."""


class StaticEagerBackend:
    """Re-runs ``fn`` on the static inputs and copies the results into the output buffers."""

    name = "static_eager"

    def capture(self, fn: FrameFn, static_inputs: Sequence[Tensor]) -> tuple[Callable[[], None], tuple[Tensor, ...]]:
        outputs = tuple(o.clone() for o in fn(*static_inputs))

        def replay() -> None:
            for buf, new in zip(outputs, fn(*static_inputs)):
                buf.copy_(new)

        return replay, outputs


class CudaGraphBackend:
    """torch.cuda.CUDAGraph capture after a warm-up on a side stream; all graphs of one backend
    share one memory pool (they never run at the same time)."""

    name = "cuda_graph"

    def __init__(self, warmup: int = 3) -> None:
        self.warmup = warmup
        self.pool: Any = None

    def capture(self, fn: FrameFn, static_inputs: Sequence[Tensor]) -> tuple[Callable[[], None], tuple[Tensor, ...]]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # lazy initialisation (cuBLAS handles, autotuning) off the graph
            for _ in range(self.warmup):
                fn(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = tuple(fn(*static_inputs))
        return graph.replay, outputs


@dataclass
class _Entry:
    inputs: tuple[Tensor, ...]
    replay: Callable[[], None]
    outputs: tuple[Tensor, ...]
    # the tensor last copied into each input, held so that a freed tensor's identity cannot be
    # taken by a new one and mistaken for it
    last_seen: list[Tensor | None] = field(default_factory=list)


@dataclass
class GraphStats:
    captures: int = 0
    replays: int = 0
    fallbacks: int = 0  # frames run eagerly because their signature's capture failed
    evictions: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # signature -> why its capture failed

    def as_dict(self) -> dict[str, Any]:
        return {"captures": self.captures, "replays": self.replays, "fallbacks": self.fallbacks,
                "evictions": self.evictions, "failures": dict(self.failures)}


class FrameGraph:
    """``graph(key, fn, *inputs)`` -> the outputs of ``fn(*inputs)``, replayed from the capture
    made for ``key`` (``fn`` is only called to capture, or eagerly after a failed capture). The returned tensors are the capture's own buffers: read them (copy to the
    host) before the next call. ``key`` must determine every input's shape and dtype and which
    code path ``fn`` takes; a new key captures again (at most ``max_entries`` kept, the oldest
    evicted)."""

    def __init__(self, backend: CaptureBackend, max_entries: int = 4,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.backend, self.max_entries = backend, max_entries
        self.on_event = on_event or (lambda text: None)
        self.stats = GraphStats()
        self._entries: dict[Hashable, _Entry] = {}

    def __call__(self, key: Hashable, fn: FrameFn, *inputs: Tensor) -> tuple[Tensor, ...]:
        if repr(key) in self.stats.failures:
            self.stats.fallbacks += 1
            return tuple(fn(*inputs))
        entry = self._entries.get(key)
        if entry is None:
            entry = self._capture(key, fn, inputs)
            if entry is None:
                self.stats.fallbacks += 1
                return tuple(fn(*inputs))
        for i, (buf, x) in enumerate(zip(entry.inputs, inputs)):
            if entry.last_seen[i] is not x or not _is_cached(x):
                buf.copy_(x, non_blocking=True)
                entry.last_seen[i] = x if _is_cached(x) else None
        entry.replay()
        self.stats.replays += 1
        return entry.outputs

    def _capture(self, key: Hashable, fn: FrameFn, inputs: Sequence[Tensor]) -> _Entry | None:
        static = tuple(x.detach().clone() for x in inputs)
        try:
            replay, outputs = self.backend.capture(fn, static)
        except Exception as e:  # noqa: BLE001 - any capture failure means: run this signature eagerly
            self.stats.failures[repr(key)] = f"{type(e).__name__}: {e}"[:300]
            self.on_event(f"{self.backend.name} capture failed for {key!r}, running it eagerly: "
                          f"{type(e).__name__}: {e}")
            return None
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
            self.stats.evictions += 1
        entry = _Entry(static, replay, outputs, [x if _is_cached(x) else None for x in inputs])
        self._entries[key] = entry
        self.stats.captures += 1
        self.on_event(f"{self.backend.name} captured for {key!r} ({self.stats.captures} so far)")
        return entry

    def clear(self) -> None:
        """Drop every capture (a new model or device)."""
        self._entries.clear()
        self.stats.failures.clear()


def _is_cached(x: Tensor) -> bool:
    """Inputs marked with ``mark_cached`` (encodings kept across frames) are copied only when a
    different tensor object arrives; per-frame inputs are copied every call."""
    return getattr(x, "vla_frame_graph_cached", False)


def mark_cached(x: Tensor) -> Tensor:
    """Mark ``x`` as an input that stays the same object (and value) across frames."""
    x.vla_frame_graph_cached = True  # type: ignore[attr-defined]
    return x
