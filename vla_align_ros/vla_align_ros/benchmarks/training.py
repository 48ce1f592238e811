"""Training throughput: the trimodal contrastive step (vision + text + action towers, three pair
losses) beside the two-tower step (vision + text, one loss) on the same backbones and batch."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from ..model.trimodal import TrimodalModel


def _random_batch(model: TrimodalModel, batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    s = cfg.vision.image_size
    tok = model.tokenize([f"pick up the cube number {i}" for i in range(batch)], device)
    return {
        "images": torch.randint(0, 256, (batch, s, s, 3), dtype=torch.uint8, generator=g).to(device),
        "input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
        "actions": torch.randn(batch, cfg.action.horizon, cfg.action.action_dim, generator=g).to(device),
        "state": torch.randn(batch, max(cfg.action.state_width, 1), generator=g)[:, : cfg.action.state_width].to(device),
        "ids": (torch.arange(batch) % max(batch // 4, 1)).to(device),
    }


def _step_fn(model: TrimodalModel, kind: str, b: dict[str, torch.Tensor]) -> torch.Tensor:
    vis = model.encode_image(b["images"])
    txt = model.encode_text(b["input_ids"], b["attention_mask"])
    if kind == "two_tower":
        return model.loss.pair_loss("vl", model.proj_vision(vis.pooled), model.proj_text(txt.pooled), b["ids"])
    state = b["state"] if model.cfg.action.state_dim > 0 else None
    emb = model.embed(vis, txt, b["actions"], state)
    return model.loss(emb.as_dict(), b["ids"], b["ids"]).total


def step_rate(model: TrimodalModel, kind: str, batch: int, steps: int, warmup: int = 2,
              device: torch.device | None = None) -> dict[str, Any]:
    """Samples per second of ``kind`` ('two_tower' or 'trimodal') training steps."""
    device = device or next(model.parameters()).device
    model.train()
    b = _random_batch(model, batch, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with amp:
            loss = _step_fn(model, kind, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    return {"batch": batch, "step_ms_p50": round(t * 1e3, 2), "samples_per_s": round(batch / t, 1),
            "loss": round(float(loss.detach()), 4)}


def training_throughput(model: TrimodalModel, batch: int, steps: int) -> dict[str, Any]:
    """Both step kinds on one model, alternating so machine noise falls on both alike."""
    out: dict[str, Any] = {}
    for kind in ("two_tower", "trimodal"):
        out[kind] = step_rate(model, kind, batch, steps)
    out["trimodal_over_two_tower_step"] = round(out["trimodal"]["step_ms_p50"] / out["two_tower"]["step_ms_p50"], 3)
    return out
