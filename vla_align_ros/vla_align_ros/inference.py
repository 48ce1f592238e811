"""One frame through the trained model, as the online nodes run it (pure PyTorch, no ROS).

The instruction is tokenised and encoded once when it arrives (cached by text); each frame then
costs one vision forward plus the heads. Outputs are what the nodes publish: the mask of the
phrase's object, the active step and its progress, and an action chunk in robot units.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data.gripper_events import GripperEvents, gripper_opening
from .frame_graph import CudaGraphBackend, FrameGraph, mark_cached
from .data.pseudo_masks import mask_from_peak
from .model.checkpoint import load_checkpoint
from .model.text import TextOutput
from .model.vision import VisionOutput
from .model.trimodal import TrimodalModel
from .text_input import split_steps, validate_instruction


PRECISIONS = ("fp32", "bf16_autocast", "bf16")


@dataclass
class EncodedInstruction:
    text: str
    steps: list[str]
    tokens: TextOutput  # (1, T, C) word features of the whole instruction
    step_emb: torch.Tensor  # (1, K, D) projected step phrases
    step_tokens: TextOutput  # (K, Ts, C) word features of each step phrase (heads.ground_steps)


@dataclass
class FrameResult:
    mask: np.ndarray  # (H, W) bool, the object the instruction names (active step)
    mask_logits: np.ndarray  # (H, W) float32
    score: float  # is the phrase's object in view, [0, 1]
    peak: tuple[int, int]  # (row, col) of the strongest mask pixel
    step_index: int
    step_probs: np.ndarray  # (K,)
    progress: float
    actions: np.ndarray  # (H, A) action chunk in robot units (twist + gripper)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device={device!r}: use auto, cpu or cuda[:N]")
    return torch.device(device)


class InferenceSession:
    """A loaded model plus a cache of encoded instructions. One per process: the perception and
    policy nodes share it when they run in one process, so nothing is encoded twice."""

    def __init__(self, checkpoint: str | Path | TrimodalModel, device: str = "cpu", cache_size: int = 32,
                 threads: int = 0, grow_masks: bool = True, precision: str = "fp32", graphs: bool | None = None,
                 log: Any = None) -> None:
        """``precision``: fp32, bf16_autocast (fp32 weights, bf16 matmuls) or bf16 (bf16 weights
        and autocast). ``graphs``: replay the per-frame forward from a CUDA graph (None: on CUDA
        only); captures, replays and fallbacks are in ``graph_stats()``."""
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        # The published mask: the region grown from the map's peak (data.pseudo_masks), or the
        # map's own logits > 0 (False).
        self.grow_masks = grow_masks
        model = checkpoint if isinstance(checkpoint, TrimodalModel) else load_checkpoint(checkpoint)
        if precision == "bf16" and model is checkpoint:
            model = copy.deepcopy(model)  # bf16 weights: the caller's model stays as it is
        # the checkpoint folder (what policies read beside the weights, e.g. skills.json); None for a model object
        self.checkpoint_dir = None if isinstance(checkpoint, TrimodalModel) else Path(checkpoint)
        self.model: TrimodalModel = model.to(self.device).eval()
        if precision == "bf16":
            self.model.to(torch.bfloat16)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, EncodedInstruction] = OrderedDict()
        self._phrases: dict[tuple[str, ...], TextOutput] = {}  # object phrases of locate(), encoded once
        self._last_step = 0  # the active step never goes back within one instruction
        self._gripper = GripperEvents()  # grasps and releases since the instruction (heads.ground_steps)
        self._instruction: EncodedInstruction | None = None
        self._last: tuple[object, FrameResult] | None = None  # (frame key, result) shared by the nodes
        self.latest_state: np.ndarray | None = None  # robot state used when a caller passes none
        self.lock = threading.Lock()  # perception and policy may call from different threads
        # Every model call runs on this one thread, whichever executor thread asks: torch's CPU
        # thread pool belongs to the calling thread, and pools of several callers spin against
        # each other (measured: 15 ms per frame instead of 8, tails over a second, on 2 cores).
        self._worker_ident: int | None = None
        self._threads = threads  # torch CPU threads of the inference thread (0: torch's default)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-inference",
                                          initializer=self._on_worker_start)
        # CUDA: frames copied through one pinned host buffer per shape so the upload is
        # asynchronous; the only synchronisation is reading the results back.
        use_graphs = self.device.type == "cuda" if graphs is None else graphs
        if use_graphs and self.device.type != "cuda":
            raise ValueError("graphs=True needs a CUDA device")
        self.graph: FrameGraph | None = FrameGraph(CudaGraphBackend(), on_event=log) if use_graphs else None
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}
        self.vision_passes = 0  # vision encoder runs (frames, locate, locate_steps), for the one-pass check
        self.frame_cache_hits = 0  # step() calls answered from another node's result for the same frame
        self.vision_reuses = 0  # locate_steps() calls that used step()'s vision features of the same frame
        self._frame_vision: tuple[object, Any] | None = None  # (frame key, VisionOutput) of the last step()
        self.profile = False  # True: synchronise between stages so last_timing splits them exactly
        self.last_timing: dict[str, float] = {}  # ms of the last model call (encode, heads: with profile)

    def graph_stats(self) -> dict[str, Any] | None:
        """CUDA graph captures, replays, eager fallbacks (None: graphs are off)."""
        return None if self.graph is None else self.graph.stats.as_dict()

    def _on_worker_start(self) -> None:
        self._worker_ident = threading.get_ident()
        if self._threads > 0:
            torch.set_num_threads(self._threads)  # set here: the inference thread runs every model call

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the inference thread and wait for it (directly when already there)."""
        if threading.get_ident() == self._worker_ident:
            return fn(*args)
        return self._worker.submit(fn, *args).result()

    def submit(self, fn: Any) -> None:
        """Queue ``fn`` on the inference thread without waiting (the nodes' frame handlers).
        Raises RuntimeError once the session is closed."""
        self._worker.submit(fn)

    @property
    def horizon(self) -> int:
        return self.model.cfg.action.horizon

    def encode_instruction(self, text: str) -> EncodedInstruction:
        text = validate_instruction(text)
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        return self._call(self._encode, text)

    @torch.no_grad()
    def _encode(self, text: str) -> EncodedInstruction:
        m = self.model
        steps = split_steps(text)[: m.cfg.heads.max_steps]
        tok = m.tokenize([text] + steps, self.device)
        out = m.encode_text(tok["input_ids"], tok["attention_mask"])
        whole = out.select(slice(0, 1))
        step_emb = m.proj_text(out.pooled[1:])[None]  # (1, K, D)
        enc = EncodedInstruction(text=text, steps=steps, tokens=whole, step_emb=step_emb,
                                 step_tokens=out.select(slice(1, None)))
        self._cache[text] = enc
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return enc

    def set_instruction(self, text: str) -> EncodedInstruction:
        enc = self.encode_instruction(text)
        if self._instruction is None or enc.text != self._instruction.text:
            self._last_step = 0
            self._gripper.reset()
        self._instruction = enc
        return enc

    @property
    def instruction(self) -> EncodedInstruction | None:
        return self._instruction

    def step(self, image: np.ndarray, state: np.ndarray | None = None, key: object = None) -> FrameResult:
        """image: (H, W, 3) uint8 RGB (a view of the message buffer is fine: it is read once);
        state: (S,) joint positions in the training order (then their velocities, (2S,), for a
        model with ``action.velocity``), or None; key: the frame's identity
        (its stamp): a second call with the same key and instruction returns the same result
        without running the model again (perception and policy in one process)."""
        with self.lock:
            text = None if self._instruction is None else self._instruction.text
            if key is not None and self._last is not None and self._last[0] == (key, text):
                self.frame_cache_hits += 1
                return self._last[1]
            res = self._call(self._step, image, state if state is not None else self.latest_state, key)
            if key is not None:
                self._last = ((key, text), res)
            return res

    def locate(self, image: np.ndarray, names: list[str], rivals: Sequence[str] = (),
               places: Sequence[str] = ()) -> dict[str, tuple[float, float, float]]:
        """Where each named object is (``red_cube``: the spatial head's mask of "the red cube"
        alone): {name: (row, col, confidence)} in pixels of ``image`` (H, W, 3) uint8. ``rivals``:
        other objects that could be in view (``sim.rules_policy.VOCABULARY``); each pixel then
        belongs to the phrase, named or rival, that scores it highest (``exclusive_logits``).
        ``places``: names that are where something goes; a model with roles (``heads.role_pool``)
        grounds them in its place role, the others in its object role."""
        with self.lock:
            return self._call(self._locate, image, list(names), tuple(rivals), tuple(places))

    @torch.no_grad()
    def _locate(self, image: np.ndarray, names: list[str], rivals: tuple[str, ...] = (),
                places: tuple[str, ...] = ()) -> dict[str, tuple[float, float, float]]:
        from .policies.maps import exclusive_logits, mask_location
        from .data.bag_dataset import object_name_phrase

        m = self.model
        self.vision_passes += 1
        key = tuple(names) + tuple(r for r in rivals if r not in names)  # the named objects first
        txt = self._encoded(key, [object_name_phrase(n) for n in key])
        with self._amp():
            vis = m.encode_image(self._upload(image)).select(torch.zeros(len(key), dtype=torch.long,
                                                                          device=self.device))  # P copies
            roles = (0, 1) if places and m.cfg.heads.role_pool else (0,)
            logits = [m.ground(vis, txt, image.shape[:2], role=r).mask_logits.float().cpu().numpy()
                      for r in roles]  # each (P, H, W)
        if rivals:
            logits = [exclusive_logits(x) for x in logits]
        return {n: mask_location(logits[1 if n in places and len(roles) > 1 else 0][i]) for i, n in enumerate(names)}

    def locate_steps(self, image: np.ndarray, steps: Sequence[str], key: object = None,
                     ) -> list[tuple[tuple[float, float, float], ...]]:
        """Where each step of an instruction acts, from its own maps: [(pick, place)] per step,
        each (row, col, confidence) in pixels of ``image``: the peaks of the step phrase's object
        role (0) and place role (1). A model without roles gives the pick only. ``key``: the
        frame's identity; when ``step`` has just run on the same frame, its vision features are
        reused instead of running the encoder again."""
        with self.lock:
            return self._call(self._locate_steps, image, tuple(steps), key)

    @torch.no_grad()
    def _locate_steps(self, image: np.ndarray, steps: tuple[str, ...], key: object = None,
                      ) -> list[tuple[tuple[float, float, float], ...]]:
        from .policies.maps import mask_location

        m = self.model
        txt = self._encoded(("steps",) + steps, list(steps))
        roles = (0, 1) if m.cfg.heads.role_pool else (0,)
        with self._amp():
            if key is not None and self._frame_vision is not None and self._frame_vision[0] == key:
                base = self._frame_vision[1]
                self.vision_reuses += 1
            else:
                base = m.encode_image(self._upload(image))
                self.vision_passes += 1
            vis = base.select(torch.zeros(len(steps), dtype=torch.long, device=self.device))  # K copies
            maps = [m.ground(vis, txt, image.shape[:2], role=r).mask_logits.float().cpu().numpy() for r in roles]
        return [tuple(mask_location(x[k]) for x in maps) for k in range(len(steps))]

    def _encoded(self, key: tuple[str, ...], texts: list[str]) -> TextOutput:
        """``texts`` encoded once and kept under ``key`` (locate's phrases, locate_steps' steps)."""
        txt = self._phrases.get(key)
        if txt is None:
            tok = self.model.tokenize(texts, self.device)
            if len(self._phrases) >= self.cache_size:
                self._phrases.clear()
            txt = self._phrases[key] = self.model.encode_text(tok["input_ids"], tok["attention_mask"])
        return txt

    def close(self) -> None:
        """Stop the inference thread (idempotent); the session cannot run the model afterwards."""
        self._worker.shutdown(wait=True)

    def _upload(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, H, W, 3) on the device (through a pinned buffer on CUDA)."""
        host = torch.from_numpy(np.ascontiguousarray(image))
        if self.device.type != "cuda":
            return host[None]
        buf = self._pinned.get(tuple(host.shape))
        if buf is None:
            buf = self._pinned[tuple(host.shape)] = torch.empty(host.shape, dtype=torch.uint8).pin_memory()
        buf.copy_(host)
        return buf[None].to(self.device, non_blocking=True)

    def _mark(self) -> float:
        if self.profile and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _amp(self) -> Any:
        """The autocast context of this session's precision."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _frame_fn(self, has_state: bool, has_events: bool, has_words: tuple[bool, bool],
                  marks: list[float] | None = None) -> Any:
        """The device part of one frame as a function of tensors only (what a capture records):
        (image (1, H, W, 3) uint8, [state (1, S) normalised], [events (1, 2)], last step (1,) long,
        *instruction tensors) -> (step probs (K,), mask logits (H, W), actions (Hc, A), score (1,),
        progress (1,)), all float32, then the vision features (``_vision_tensors``). ``marks``: the
        time after the vision encoder is appended there (profiling, never under a capture)."""
        m = self.model

        def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            it = iter(xs)
            image = next(it)
            s = next(it) if has_state else None
            events = next(it) if has_events else None
            last = next(it)
            tokens = _text_from(it, has_words[0])
            step_emb = next(it)
            step_tokens = _text_from(it, has_words[1])
            h, w = image.shape[1:3]
            with self._amp():
                vis = m.encode_image(image)
                if marks is not None:
                    marks.append(self._mark())
                emb_v = m.proj_vision(vis.pooled)  # (1, D)
                k = step_emb.shape[1]
                st = m.active_step(emb_v, s, step_emb, torch.ones(1, k, dtype=torch.bool, device=image.device),
                                   events)
                # The heads read the active step's phrase (heads.ground_steps), chosen on the device:
                # this frame's best step, never going back (as on the host).
                head = m.step_text(step_tokens, st.step_logits.argmax(-1).clamp(min=last)) \
                    if m.cfg.heads.ground_steps else tokens
                g = m.ground(vis, head, (h, w))
                chunk = m.denormalize_actions(m.act(vis, head, s).float())[0]  # (Hc, A)
            return (st.step_logits.float().softmax(-1)[0], g.mask_logits[0].float(), chunk.float(),
                    g.score.float().reshape(1), st.progress.float().reshape(1)) + _vision_tensors(vis)

        return fn

    @torch.no_grad()
    def _step(self, image: np.ndarray, state: np.ndarray | None, key: object = None) -> FrameResult:
        if self._instruction is None:
            raise RuntimeError("no instruction yet: call set_instruction first")
        m, enc = self.model, self._instruction
        h, w = image.shape[:2]
        self.vision_passes += 1
        t0 = self._mark()
        s = events = None
        if state is not None and m.cfg.action.state_dim > 0:
            if np.shape(state) != (m.cfg.action.state_width,):
                raise ValueError(f"state has shape {np.shape(state)}; the model reads {m.cfg.action.state_width} "
                                 f"values ({m.cfg.action.state_dim} positions"
                                 f"{', then their velocities' if m.cfg.action.velocity else ''})")
            s = m.normalize_state(torch.as_tensor(np.asarray(state, dtype=np.float32), device=self.device)[None])
        if m.cfg.heads.ground_steps and state is not None and m.cfg.action.gripper_dims > 0:
            positions = np.asarray(state, dtype=np.float32)[: m.cfg.action.state_dim]
            counts = self._gripper.update(float(gripper_opening(positions, m.cfg.action.gripper_dims)))
            events = torch.tensor([counts], dtype=torch.float32, device=self.device)  # (1, 2)
        k = enc.step_emb.shape[1]
        # (bounded by this instruction's steps: a frame of the previous one may have moved it)
        last = torch.tensor([min(self._last_step, k - 1)], dtype=torch.long, device=self.device)
        inputs = [self._upload(image)] + [x for x in (s, events) if x is not None] + [last] \
            + _text_tensors(enc.tokens) + [mark_cached(enc.step_emb)] + _text_tensors(enc.step_tokens)
        words = (enc.tokens.words is not None, enc.step_tokens.words is not None)
        marks: list[float] | None = [] if self.profile else None
        fn = self._frame_fn(s is not None, events is not None, words, marks)
        if self.graph is not None and marks is None:
            signature = (s is not None, events is not None, words) + tuple((tuple(x.shape), x.dtype) for x in inputs)
            out = self.graph(signature, fn, *inputs)
        else:
            out = fn(*inputs)
        # The vision features stay on the device for locate_steps on the same frame (a capture's
        # buffers: valid until the next step, which replaces this entry).
        self._frame_vision = (key, _vision_from(out[5:], self.model))
        # The one synchronisation: results to the host for publishing.
        res_probs, res_logits, res_chunk, score, progress = (x.cpu().numpy() for x in out[:5])
        t2 = time.perf_counter()
        self.last_timing = {"model_ms": (t2 - t0) * 1e3}
        if marks:
            self.last_timing.update(encode_ms=(marks[0] - t0) * 1e3, heads_ms=(t2 - marks[0]) * 1e3)
        peak = int(res_logits.argmax())
        # Online form of the monotonic decoding used offline: the step only moves forward.
        step = max(int(res_probs.argmax()), min(self._last_step, len(res_probs) - 1))
        self._last_step = step
        mask = mask_from_peak(image, res_logits) if self.grow_masks else res_logits > 0
        return FrameResult(mask=mask, mask_logits=res_logits, score=float(score[0]),
                           peak=(peak // w, peak % w), step_index=step, step_probs=res_probs,
                           progress=float(progress[0]), actions=res_chunk)


def _vision_tensors(v: VisionOutput) -> tuple[torch.Tensor, ...]:
    """The tensors of a VisionOutput, optional ones that exist only (the model decides which)."""
    return (v.patches, v.pooled) + tuple(t for t in (v.fine, v.colour, v.fine_grey) if t is not None)


def _vision_from(xs: Sequence[torch.Tensor], model: TrimodalModel) -> VisionOutput:
    """``_vision_tensors`` back into a VisionOutput; which optional tensors exist follows the
    model's configuration (the grid from the patch count)."""
    it = iter(xs)
    patches, pooled = next(it), next(it)
    side = int(round(patches.shape[1] ** 0.5))
    heads = model.cfg.heads
    has_fine = model.fine is not None
    fine = next(it) if has_fine else None
    colour = next(it) if has_fine and heads.colour_channels > 0 else None
    fine_grey = next(it) if has_fine and heads.factorised_masks != "none" else None
    return VisionOutput(patches, pooled, (side, side), fine, colour, fine_grey)


def _text_tensors(t: TextOutput) -> list[torch.Tensor]:
    """A TextOutput as a flat list of tensors (``_text_from`` reads it back)."""
    return [mark_cached(t.tokens), mark_cached(t.mask), mark_cached(t.pooled)] + \
        ([mark_cached(t.words)] if t.words is not None else [])


def _text_from(it: Any, has_words: bool) -> TextOutput:
    return TextOutput(next(it), next(it), next(it), next(it) if has_words else None)
