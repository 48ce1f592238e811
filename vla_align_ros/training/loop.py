"""A compact contrastive training loop over in-memory samples, and retrieval evaluation.

Used by the learning test and ``vla-align demo``; the rosbag trainer builds on the same
pieces (model, TrimodalLoss, metrics).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from ..losses.schedules import warmup_cosine_lr
from ..metrics.geometry import hubness, modality_gap
from ..metrics.retrieval import chance_recall_at_1, pairwise_retrieval
from ..model.trimodal import TrimodalModel


class Samples(Protocol):
    images: Tensor  # (N, H, W, 3) uint8
    texts: Sequence[str]
    ids: Tensor  # (N,)
    actions: Tensor  # (N, H, A)
    state: Tensor  # (N, S)

    def __len__(self) -> int: ...


class TokenCache:
    """Tokenise each distinct instruction once (robot data repeats them constantly)."""

    def __init__(self, model: TrimodalModel, texts: Sequence[str]) -> None:
        uniq = sorted(set(texts))
        self.index = {t: i for i, t in enumerate(uniq)}
        tok = model.tokenize(uniq)
        self.input_ids, self.attention_mask = tok["input_ids"], tok["attention_mask"]
        self.rows = torch.tensor([self.index[t] for t in texts])

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        r = self.rows[idx]
        ids, mask = self.input_ids[r], self.attention_mask[r]
        width = int(mask.sum(1).max())  # trim padding to the longest in this batch
        return ids[:, :width], mask[:, :width]


def train_contrastive(model: TrimodalModel, data: Samples, steps: int, batch_size: int = 128, lr: float = 1e-3,
                      weight_decay: float = 0.05, warmup: int = 20, seed: int = 0, progress: bool = True,
                      ) -> list[dict[str, float]]:
    """Trains the trimodal objective for ``steps`` steps; returns one log row per step."""
    if len(data) < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(data)} samples")
    gen = torch.Generator().manual_seed(seed)
    tokens = TokenCache(model, data.texts)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    model.train()
    log: list[dict[str, float]] = []
    perm = torch.randperm(len(data), generator=gen)
    cursor = 0
    t0 = time.perf_counter()
    # Redraw often on a terminal, rarely into a log file.
    bar = tqdm(range(steps), desc="train", disable=not progress, dynamic_ncols=True,
               mininterval=0.2 if sys.stderr.isatty() else 15.0)
    for step in bar:
        if cursor + batch_size > len(data):
            perm, cursor = torch.randperm(len(data), generator=gen), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(step, steps, warmup, lr, lr * 0.05)
        input_ids, attn = tokens.batch(idx)
        emb = model(data.images[idx], input_ids, attn, data.actions[idx], data.state[idx])
        out = model.loss(emb.as_dict(), data.ids[idx])
        if not math.isfinite(float(out.total.detach())):
            raise FloatingPointError(f"non-finite loss {float(out.total)} at step {step}")
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        row = {"step": float(step), "loss": float(out.total.detach()), "lr": opt.param_groups[0]["lr"],
               **{f"loss_{k}": float(v.detach()) for k, v in out.per_pair.items()}}
        log.append(row)
        if progress:
            bar.set_postfix(loss=f"{row['loss']:.3f}", rate=f"{(step + 1) / (time.perf_counter() - t0):.1f} it/s",
                            refresh=False)
    model.eval()
    return log


@torch.no_grad()
def embed_all(model: TrimodalModel, data: Samples, batch_size: int = 256) -> dict[str, Tensor]:
    model.eval()
    tokens = TokenCache(model, data.texts)
    parts: dict[str, list[Tensor]] = {"vision": [], "text": [], "action": []}
    for i in range(0, len(data), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(data)))
        input_ids, attn = tokens.batch(idx)
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
