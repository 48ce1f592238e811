"""The bench sections that need only PyTorch (and transformers, numpy, OpenCV, safetensors,
PyYAML): per-frame model latency in each precision, eager and captured; the trimodal against
the two-tower training step; chunked against dense SigLIP in time and memory. Nothing here
imports rclpy, MuJoCo or rosbags, so a bare GPU machine runs them."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from ..config import ModelConfig, merge_overrides
from ..inference import InferenceSession
from ..model.factory import create_model
from ..model.trimodal import TrimodalModel
from ..paths import package_config, shipped_model
from .stats import summary_ms
from .training import training_throughput

INSTRUCTION = "pick up the red cube, then put it on the blue plate"


def siglip_b16_sized_config() -> ModelConfig:
    """The SigLIP-B/16-224 robot recipe's shapes (config/model/siglip_b16_robot.yaml) built from
    config, without weights: 224 px, 16 px patches, 12 layers of 768 in each tower. The
    tokenizer is the shipped model's (no download)."""
    import yaml

    recipe = yaml.safe_load(package_config("model/siglip_b16_robot.yaml").read_text())["model"]
    tokenizer = shipped_model() / "checkpoint" / "tokenizer"
    sized = {"vision": {"kind": "hf", "name_or_path": "", "hf_model_type": "siglip", "image_size": 224,
                        "patch_size": 16, "hidden_size": 768, "num_layers": 12, "num_heads": 12, "pretrained": False},
             "text": {"kind": "hf", "name_or_path": "", "tokenizer_path": str(tokenizer), "hidden_size": 768,
                      "num_layers": 12, "num_heads": 12}}
    # the recipe's own keys are a subset: fill in every setting first, then size it
    return ModelConfig.from_dict(merge_overrides(ModelConfig.from_dict(recipe).to_dict(), sized))


def variants(device: torch.device) -> list[tuple[str, str, bool]]:
    """(name, precision, graphs) to time: every precision eager, and on CUDA each captured."""
    precisions = ("fp32", "bf16_autocast", "bf16")
    out = [(f"eager_{p}", p, False) for p in precisions]
    if device.type == "cuda":
        out += [(f"graph_{p}", p, True) for p in precisions]
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_latency(model: TrimodalModel, device: str, image_hw: tuple[int, int], frames: int, warmup: int = 5,
                  precision: str = "fp32", graphs: bool = False) -> dict[str, Any]:
    """Per-frame model time (ms): a cached instruction, a new (H, W, 3) uint8 frame each call,
    upload, forward and read-back of every head's output; the mask growth on the host is timed
    apart (``mask_growth``)."""
    from ..data.pseudo_masks import mask_from_peak

    session = InferenceSession(model, device, precision=precision, graphs=graphs, grow_masks=False)
    try:
        session.set_instruction(INSTRUCTION)
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8) for _ in range(4)]
        state = np.zeros(model.cfg.action.state_width, dtype=np.float32)
        times, grow = [], []
        for i in range(warmup + frames):
            img = imgs[i % len(imgs)]
            t0 = time.perf_counter()
            res = session._step(img, state)  # noqa: SLF001 - the model call itself, no frame cache
            t1 = time.perf_counter()
            if i >= warmup:
                times.append((t1 - t0) * 1e3)
                if i < warmup + 10:
                    t2 = time.perf_counter()
                    mask_from_peak(img, res.mask_logits)
                    grow.append((time.perf_counter() - t2) * 1e3)
        s = summary_ms(times)
        out = {"model_ms": s, "p99_over_p50": round(s["p99"] / s["p50"], 3) if s["p50"] > 0 else None,
               "mask_growth_ms": summary_ms(grow)}
        if graphs:
            out["graph"] = session.graph_stats()
        return out
    finally:
        session.close()


def model_section(models: dict[str, TrimodalModel], device: str, frames: int,
                  sizes: tuple[tuple[int, int], ...] = ((480, 640),),
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every variant of every model at every frame size, with the fastest p50 per model."""
    dev = torch.device(device)
    out: dict[str, Any] = {}
    for name, model in models.items():
        rows: dict[str, Any] = {}
        for h, w in sizes:
            for vname, precision, graphs in variants(dev):
                key = f"{w}x{h}/{vname}"
                try:
                    rows[key] = model_latency(model, device, (h, w), frames, precision=precision, graphs=graphs)
                except Exception as e:  # noqa: BLE001 - one variant failing must not hide the others
                    rows[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
                log(f"[bench] model {name} {key}: {rows[key].get('model_ms', rows[key]).get('p50', rows[key])}")
        timed = {k: v["model_ms"]["p50"] for k, v in rows.items() if "model_ms" in v}
        best = min(timed, key=timed.get) if timed else None
        out[name] = {"parameters": sum(p.numel() for p in model.parameters()), "variants": rows,
                     "fastest": {"variant": best, "p50_ms": timed.get(best)} if best else None}
    return out


def training_section(models: dict[str, tuple[TrimodalModel, int]], device: str, steps: int) -> dict[str, Any]:
    """The trimodal and two-tower step on each model at its batch size (fresh weights on ``device``)."""
    out = {}
    for name, (model, batch) in models.items():
        fresh = create_model(model.cfg).to(device)
        out[name] = training_throughput(fresh, batch, steps)
        del fresh
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def loss_timing(kind: str, n: int, dim: int, chunk: int, device: str, repeats: int = 3) -> dict[str, Any]:
    """Forward + backward of the dense or chunked SigLIP loss at batch ``n``: median time and
    peak memory above the inputs (CUDA: the allocator's peak; CPU: time only)."""
    from ..losses.contrastive import siglip_loss, siglip_loss_chunked

    dev = torch.device(device)
    g = torch.Generator().manual_seed(n)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1).to(dev).requires_grad_()
    y = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1).to(dev).requires_grad_()
    scale = torch.tensor(2.3, device=dev, requires_grad=True)
    bias = torch.tensor(-10.0, device=dev, requires_grad=True)
    fn = (lambda: siglip_loss(x, y, scale, bias)) if kind == "dense" else \
        (lambda: siglip_loss_chunked(x, y, scale, bias, chunk=chunk))
    fn().backward()  # warm-up
    times, peak, loss = [], None, float("nan")
    for _ in range(repeats):
        for t in (x, y, scale, bias):
            t.grad = None
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t0 = time.perf_counter()
        value = fn()
        value.backward()
        _sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
        loss = float(value.detach())
        if dev.type == "cuda":
            peak = round((torch.cuda.max_memory_allocated(dev) - base) / 2**20, 1)
    return {"kind": kind, "n": n, "ms": round(sorted(times)[len(times) // 2], 3), "peak_mib": peak, "loss": loss}


def loss_section(ns: tuple[int, ...], dense_max: int, device: str, dim: int = 128, chunk: int = 1024) -> dict[str, Any]:
    """Chunked against dense SigLIP at each N (dense only up to ``dense_max``: it needs N^2 floats)."""
    rows = []
    for n in ns:
        c = loss_timing("chunked", n, dim, chunk, device)
        row: dict[str, Any] = {"n": n, "chunked_ms": c["ms"], "chunked_peak_mib": c["peak_mib"]}
        if n <= dense_max:
            d = loss_timing("dense", n, dim, chunk, device)
            row.update(dense_ms=d["ms"], dense_peak_mib=d["peak_mib"],
                       chunked_over_dense_time=round(c["ms"] / d["ms"], 3),
                       loss_abs_diff=abs(c["loss"] - d["loss"]))
            if d["peak_mib"]:
                row["chunked_over_dense_memory"] = round((c["peak_mib"] or 0.0) / d["peak_mib"], 4)
        rows.append(row)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"device": device, "dim": dim, "chunk": chunk, "rows": rows}
