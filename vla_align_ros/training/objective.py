"""The full training objective on a batch: trimodal contrastive + spatial grounding (masks) +
temporal grounding (active step and progress) + policy (action-chunk regression)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.text import TextOutput
from ..model.trimodal import TrimodalModel


@dataclass
class ObjectiveWeights:
    contrastive: float = 1.0
    spatial: float = 1.0
    temporal: float = 0.5
    segments: float = 0.5
    policy: float = 1.0
    phrase: float = 0.0  # spatial grounding of one object named on its own ("the red block")

    def __post_init__(self) -> None:
        for k, v in vars(self).items():
            if v < 0:
                raise ValueError(f"objective.{k}={v}: must be >= 0")


@dataclass
class Batch:
    images: Tensor  # (B, H, W, 3) uint8
    input_ids: Tensor  # (B, T)
    attention_mask: Tensor  # (B, T)
    ids: Tensor  # (B,) composition ids
    motion_ids: Tensor  # (B,) motion ids
    actions: Tensor  # (B, H, A) raw
    state: Tensor  # (B, S) raw
    masks: Tensor  # (B, h, w) bool
    has_mask: Tensor  # (B,) bool
    step_ids: Tensor  # (B, K, Ts) token ids of each step
    step_attn: Tensor  # (B, K, Ts)
    step_valid: Tensor  # (B, K) bool
    step_index: Tensor  # (B,)
    progress: Tensor  # (B,)
    seq: "SequenceBatch | None" = None  # whole motions, for temporal localisation of steps
    phrase_ids: Tensor | None = None  # (B, Tp) one object phrase per frame
    phrase_attn: Tensor | None = None  # (B, Tp)
    phrase_masks: Tensor | None = None  # (B, h, w) bool
    has_phrase: Tensor | None = None  # (B,) bool


@dataclass
class SequenceBatch:
    """E multi-step motions, T frames each (in time order), with where each step starts and ends."""

    images: Tensor  # (E*T, H, W, 3) uint8
    state: Tensor  # (E, T, S) raw
    mask: Tensor  # (E, T) bool, valid frames first
    step_ids: Tensor  # (E, K, Ts)
    step_attn: Tensor  # (E, K, Ts)
    step_valid: Tensor  # (E, K) bool: the step exists and has frames in the sequence
    start: Tensor  # (E, K) long, frame index in the sequence
    end: Tensor  # (E, K) long


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-sample soft Dice loss. logits, target: (B, H, W) -> (B,)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.float().flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def compute_losses(model: TrimodalModel, b: Batch, w: ObjectiveWeights) -> dict[str, Tensor]:
    vis = model.encode_image(b.images)
    txt = model.encode_text(b.input_ids, b.attention_mask)
    actions = model.normalize_actions(b.actions)
    state = model.normalize_state(b.state)
    emb = model.embed(vis, txt, actions, state)
    out: dict[str, Tensor] = {}
    zero = emb.vision.new_zeros(())
    out["contrastive"] = model.loss(emb.as_dict(), b.ids, b.motion_ids).total if w.contrastive > 0 else zero
    out["spatial"] = grounding_loss(model, vis, txt, b.masks, b.has_mask) \
        if w.spatial > 0 and bool(b.has_mask.any()) else zero
    if w.phrase > 0 and b.has_phrase is not None and bool(b.has_phrase.any()):
        phr = model.encode_text(b.phrase_ids, b.phrase_attn)
        out["phrase"] = grounding_loss(model, vis, phr, b.phrase_masks, b.has_phrase)
    else:
        out["phrase"] = zero
    if w.temporal > 0:
        bsz, k, ts = b.step_ids.shape
        st = model.encode_text(b.step_ids.view(bsz * k, ts), b.step_attn.view(bsz * k, ts))
        step_emb = model.proj_text(st.pooled).view(bsz, k, -1)  # (B, K, D)
        obs = emb.vision  # (B, D)
        state_out = model.temporal.step_state(obs, step_emb, b.step_valid)
        out["temporal"] = F.cross_entropy(state_out.step_logits, b.step_index) + \
            F.mse_loss(state_out.progress, b.progress)
    else:
        out["temporal"] = zero
    if w.segments > 0 and b.seq is not None and bool(b.seq.step_valid.any()):
        out["segments"] = segment_loss(model, b.seq)
    else:
        out["segments"] = zero
    if w.policy > 0:
        pred = model.act(vis, txt, state)  # (B, H, A) normalised
        out["policy"] = F.smooth_l1_loss(pred, actions)
    else:
        out["policy"] = zero
    out["total"] = (w.contrastive * out["contrastive"] + w.spatial * out["spatial"] + w.temporal * out["temporal"]
                    + w.segments * out["segments"] + w.policy * out["policy"] + w.phrase * out["phrase"])
    return out


def grounding_loss(model: TrimodalModel, vis, txt: TextOutput, masks: Tensor, sel: Tensor) -> Tensor:
    """BCE + Dice of the text's mask against ``masks`` (B, h, w) on the samples ``sel`` (B,) bool.
    Per-sample loss, zero where there is no mask, averaged over the whole batch: the same
    normalisation on one process and on N ranks with a shard each."""
    h, wd = masks.shape[-2:]
    g = model.ground(vis.select(sel), TextOutput(txt.tokens[sel], txt.mask[sel], txt.pooled[sel]), (h, wd))
    target = masks[sel].float()
    per = F.binary_cross_entropy_with_logits(g.mask_logits, target, reduction="none").flatten(1).mean(1) \
        + dice_loss(g.mask_logits, target)  # (B_masked,)
    return torch.zeros(len(sel), device=per.device, dtype=per.dtype).masked_scatter(sel, per).mean()


def segment_loss(model: TrimodalModel, sq: SequenceBatch) -> Tensor:
    """Cross-entropy of each step's start and end frame over the motion. The frames' vision
    embeddings are taken without gradient (the per-frame objective trains the encoder; this
    trains the localiser on top at a fraction of the cost)."""
    e, t = sq.mask.shape
    with torch.no_grad():
        vis = model.encode_image(sq.images)
        frames = model.proj_vision(vis.pooled).view(e, t, -1)  # (E, T, D)
    seq = model.frame_features(frames, model.normalize_state(sq.state))  # (E, T, D)
    k, ts = sq.step_ids.shape[1:]
    st = model.encode_text(sq.step_ids.view(e * k, ts), sq.step_attn.view(e * k, ts))
    steps = model.proj_text(st.pooled).view(e, k, -1)  # (E, K, D)
    start, end = model.temporal.localize_steps(seq, sq.mask, steps)  # (E, K, T)
    v = sq.step_valid
    return 0.5 * (F.cross_entropy(start[v], sq.start[v]) + F.cross_entropy(end[v], sq.end[v]))
