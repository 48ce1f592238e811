"""The training loop both trainers share, a compact contrastive trainer over in-memory samples,
and retrieval evaluation.

``run_steps`` is the one optimisation loop: AdamW (``adamw``) with a warmup-cosine learning rate,
a non-finite check, gradient clipping, one log row per step and a tqdm progress bar. The rosbag
trainer (``trainer.train``) and ``train_contrastive`` (the learning test and ``vla-align demo``)
differ only in how a step's losses are computed and what happens after a step.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from ..losses.trimodal import PAIRS
from ..metrics.geometry import hubness, modality_gap
from ..metrics.retrieval import chance_recall_at_1, pairwise_retrieval
from ..model.trimodal import TrimodalModel
from .schedule import warmup_cosine_lr
from .tokens import TokenTable

MIN_LR_FRACTION = 0.05  # the cosine decays to this fraction of the base learning rate
CLIP_NORM = 1.0  # gradient-norm clip


class Samples(Protocol):
    images: Tensor  # (N, H, W, 3) uint8
    texts: Sequence[str]
    ids: Tensor  # (N,)
    actions: Tensor  # (N, H, A)
    state: Tensor  # (N, S)

    def __len__(self) -> int: ...


def dist_info() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def adamw(model: nn.Module, lr: float, weight_decay: float) -> tuple[torch.optim.AdamW, list[nn.Parameter]]:
    """AdamW over the trained parameters, weight decay on matrices (ndim >= 2) only, one
    multi-tensor update per step (the same weights to the bit as the per-tensor loop).
    -> (optimiser, the trained parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=lr, foreach=True)
    return opt, params


def run_steps(opt: torch.optim.Optimizer, params: Sequence[nn.Parameter], start: int, end: int, total_steps: int,
              lr: float, warmup: int, losses_at: Callable[[int], dict[str, Tensor]], log: list[dict[str, float]],
              progress: bool = True, after_step: Callable[[int, dict[str, float], float], bool] | None = None) -> int:
    """Steps ``start`` .. ``end - 1`` of a ``total_steps`` run. Each step: the warmup-cosine
    learning rate, ``losses_at(step)`` (named scalar losses with a ``total``), a non-finite
    check, backward, clipping, the optimiser step, and a row {step, lr, every loss} appended to
    ``log`` (under torchrun the mean over the ranks). ``after_step(step, row, rate)`` returning
    True ends the loop after that step. -> the step count reached."""
    rank, world = dist_info()
    # Redraw often on a terminal, rarely into a log file.
    bar = tqdm(range(start, end), desc="train", disable=not progress or rank != 0, dynamic_ncols=True,
               initial=start, total=total_steps, mininterval=0.2 if sys.stderr.isatty() else 15.0)
    t0 = time.perf_counter()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(step, total_steps, warmup, lr, lr * MIN_LR_FRACTION)
        losses = losses_at(step)
        total = losses["total"]
        if not math.isfinite(float(total.detach())):
            raise FloatingPointError(f"non-finite loss at step {step}: { {k: float(v.detach()) for k, v in losses.items()} }")
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        opt.step()
        values = torch.stack([v.detach().float() for v in losses.values()])  # (L,)
        if world > 1:  # the loss of the global batch: the mean of the ranks' local losses
            dist.all_reduce(values)
            values /= world
        row = {"step": step, "lr": opt.param_groups[0]["lr"], **{k: float(v) for k, v in zip(losses, values)}}
        log.append(row)
        rate = (step + 1 - start) / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(loss=f"{row['total']:.3f}", rate=f"{rate:.1f} it/s", refresh=False)
        if after_step is not None and after_step(step, row, rate):
            return step + 1
    return end


def train_contrastive(model: TrimodalModel, data: Samples, steps: int, batch_size: int = 128, lr: float = 1e-3,
                      weight_decay: float = 0.05, warmup: int = 20, seed: int = 0, progress: bool = True,
                      ) -> list[dict[str, float]]:
    """Trains the trimodal contrastive objective for ``steps`` steps on batches drawn without
    replacement (reshuffled when a pass runs out); returns one log row per step: step, loss
    (the weighted total), lr and loss_PAIR for each modality pair."""
    if len(data) < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(data)} samples")
    gen = torch.Generator().manual_seed(seed)
    tokens = TokenTable(model, data.texts)
    opt, params = adamw(model, lr, weight_decay)
    model.train()

    def batches() -> Iterator[Tensor]:
        while True:
            perm = torch.randperm(len(data), generator=gen)  # (N,)
            for i in range(0, len(data) - batch_size + 1, batch_size):
                yield perm[i: i + batch_size]

    draw = batches()

    def losses_at(step: int) -> dict[str, Tensor]:
        idx = next(draw)  # (batch_size,)
        input_ids, attn = tokens([data.texts[i] for i in idx.tolist()])
        emb = model(data.images[idx], input_ids, attn, data.actions[idx], data.state[idx])
        out = model.loss(emb.as_dict(), data.ids[idx])
        return {"total": out.total, **out.per_pair}

    log: list[dict[str, float]] = []
    run_steps(opt, params, 0, steps, steps, lr, warmup, losses_at, log, progress)
    model.eval()
    return [{"step": float(r["step"]), "loss": r["total"], "lr": r["lr"],
             **{f"loss_{p}": r[p] for p in PAIRS if p in r}} for r in log]


@torch.no_grad()
def embed_all(model: TrimodalModel, data: Samples, batch_size: int = 256) -> dict[str, Tensor]:
    """Every sample's vision, text and action embeddings: {modality: (N, D)}."""
    model.eval()
    tokens = TokenTable(model, data.texts)
    parts: dict[str, list[Tensor]] = {"vision": [], "text": [], "action": []}
    for i in range(0, len(data), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(data)))
        input_ids, attn = tokens([data.texts[j] for j in idx.tolist()])
        emb = model(data.images[idx], input_ids, attn, data.actions[idx], data.state[idx]).as_dict()
        for k, v in emb.items():
            parts[k].append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate_retrieval(model: TrimodalModel, data: Samples) -> dict[str, Any]:
    """Retrieval for every pair and direction (duplicate-aware), chance R@1, modality gaps and
    hubness on ``data``."""
    emb = embed_all(model, data)
    ids = data.ids
    return {
        "retrieval": pairwise_retrieval(emb, ids),
        "chance_r1": chance_recall_at_1(ids, ids),
        "n": len(data),
        "n_distinct_instructions": int(ids.unique().numel()),
        "modality_gap": {"vision-text": modality_gap(emb["vision"], emb["text"]),
                         "vision-action": modality_gap(emb["vision"], emb["action"]),
                         "text-action": modality_gap(emb["text"], emb["action"])},
        "hubness_text_to_vision": hubness(emb["text"], emb["vision"], k=10),
    }
