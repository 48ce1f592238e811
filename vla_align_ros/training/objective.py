"""The full training objective on a batch: trimodal contrastive + spatial grounding (masks) +
temporal grounding (active step and progress) + policy (action-chunk regression)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses.contrastive import info_nce_directional
from ..model.heads import true_keypoints
from ..model.text import TextOutput
from ..model.trimodal import TrimodalModel
from .techniques import (RobustnessConfig, adversarial_images, augment_images, consistency_loss, mask_pool,
                         patch_word_loss)


@dataclass
class ObjectiveWeights:
    contrastive: float = 1.0
    spatial: float = 1.0
    temporal: float = 0.5
    segments: float = 0.5
    policy: float = 1.0
    phrase: float = 0.0  # spatial grounding of one object named on its own ("the red block")
    target: float = 0.0  # the instruction's second role (heads.role_pool): where the object goes
    # Affordance maps (CLIPort-style): each role's mask logits as a distribution over pixels,
    # cross-entropy against a Gaussian at the demonstration's pick (role 0) and place (role 1) pixel.
    affordance: float = 0.0
    affordance_sigma: float = 1.5  # px, the Gaussian target's spread
    # heads.policy_keypoints: the fraction of frames whose policy keypoints come from the true
    # masks (where the bag has them) rather than the model's own; the policy learns the geometry
    # from clean positions and how to act on its own noisy ones.
    keypoint_teacher: float = 0.5
    # heads.policy_keypoints: the policy's state + keypoints path also regresses the chunks of
    # ``geometry_batch`` more frames per step from their true keypoints (no images needed, so
    # almost free): the geometry of reaching is learnt from many more examples.
    geometry: float = 0.0
    geometry_batch: int = 256
    # Alignment techniques (training/techniques.py), 0 = off:
    object_level: float = 0.0  # features pooled in an object's mask <-> its phrase (InfoNCE)
    patch_word: float = 0.0  # fine-grained patch-word score (InfoNCE over tasks)
    consistency: float = 0.0  # two augmented views of a frame embed alike
    adversarial: float = 0.0  # the vision-text loss on FGSM/PGD-perturbed frames

    def __post_init__(self) -> None:
        for k, v in vars(self).items():
            if v < 0:
                raise ValueError(f"objective.{k}={v}: must be >= 0")
        if self.keypoint_teacher > 1:
            raise ValueError(f"objective.keypoint_teacher={self.keypoint_teacher}: a fraction, must be <= 1")


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
    phrase_obj: Tensor | None = None  # (B,) long, the phrase's object in the label order (-1: none)
    target_masks: Tensor | None = None  # (B, h, w) bool, where the active step puts its object
    has_target: Tensor | None = None  # (B,) bool
    offset: int = 0  # the first sample's position in the global batch (this rank's share starts there)
    teacher: Tensor | None = None  # (B,) bool: the policy trains on this frame's true keypoints
    geo_state: Tensor | None = None  # (G, S) raw, frames for objective.geometry
    geo_keypoints: Tensor | None = None  # (G, 2, 3) their true keypoints
    geo_actions: Tensor | None = None  # (G, H, A) raw
    events: Tensor | None = None  # (B, 2) grasps and releases since the instruction (heads.ground_steps)
    neg_ids: Tensor | None = None  # (B*R, Tn) one-attribute variants of each instruction
    neg_attn: Tensor | None = None  # (B*R, Tn)
    pick_px: Tensor | None = None  # (B, 2) [row, col] where the active step acts (data.keyframes); NaN none
    place_px: Tensor | None = None  # (B, 2) where it puts the object down; NaN none


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


def compute_losses(model: TrimodalModel, b: Batch, w: ObjectiveWeights,
                   robust: RobustnessConfig | None = None) -> dict[str, Tensor]:
    robust = robust or RobustnessConfig()
    vis = model.encode_image(b.images)
    txt = model.encode_text(b.input_ids, b.attention_mask)
    actions = model.normalize_actions(b.actions)
    state = model.normalize_state(b.state)
    emb = model.embed(vis, txt, actions, state)
    out: dict[str, Tensor] = {}
    zero = emb.vision.new_zeros(())
    text_negs = None
    if b.neg_ids is not None and w.contrastive > 0:
        bsz = b.input_ids.shape[0]
        text_negs = model.proj_text(model.encode_text(b.neg_ids, b.neg_attn).pooled).view(bsz, -1, model.embed_dim)
    out["contrastive"] = model.loss(emb.as_dict(), b.ids, b.motion_ids, text_negs).total if w.contrastive > 0 else zero
    bsz, k = b.step_ids.shape[:2]
    steps = None  # every sample's K step phrases (B*K texts), for the step heads and the temporal loss
    head_txt = txt  # what the spatial and policy heads read: the whole instruction ...
    if model.cfg.heads.ground_steps:  # ... or the active step's phrase (the true step here)
        steps = model.encode_steps(b.step_ids, b.step_attn)
        head_txt = model.step_text(steps, b.step_index)
    by_roles = w.affordance > 0 and b.pick_px is not None  # keyframe labels: both roles from the demonstration
    if by_roles:  # each role's mask and affordance from one grounding pass
        out["spatial"], out["affordance"] = role_losses(model, vis, head_txt, 0, b.masks, b.has_mask, b.pick_px,
                                                        w.affordance_sigma, tuple(b.images.shape[1:3]))
        out["target"], place = role_losses(model, vis, head_txt, 1, b.target_masks, b.has_target, b.place_px,
                                           w.affordance_sigma, tuple(b.images.shape[1:3]))
        out["affordance"] = out["affordance"] + place
    else:
        out["spatial"] = grounding_loss(model, vis, head_txt, b.masks, b.has_mask) \
            if w.spatial > 0 and bool(b.has_mask.any()) else zero
        out["affordance"] = zero
    if w.phrase > 0 and b.has_phrase is not None and bool(b.has_phrase.any()):
        phr = model.encode_text(b.phrase_ids, b.phrase_attn)
        # A phrase alone names one thing in either role: every other frame grounds it as the
        # place, so the place role knows every object's name, including places never trained on.
        roles = (b.offset + torch.arange(len(b.has_phrase), device=b.has_phrase.device)) % 2 \
            if model.cfg.heads.role_pool else 0
        out["phrase"] = grounding_loss(model, vis, phr, b.phrase_masks, b.has_phrase, roles)
    else:
        out["phrase"] = zero
    if not by_roles:
        out["target"] = grounding_loss(model, vis, head_txt, b.target_masks, b.has_target, role=1) \
            if w.target > 0 and b.has_target is not None and bool(b.has_target.any()) else zero
    if w.temporal > 0:
        if steps is None:
            steps = model.encode_steps(b.step_ids, b.step_attn)
        step_emb = model.proj_text(steps.pooled).view(bsz, k, -1)  # (B, K, D)
        state_out = model.active_step(emb.vision, state, step_emb, b.step_valid, b.events)
        out["temporal"] = F.cross_entropy(state_out.step_logits, b.step_index) + \
            F.mse_loss(state_out.progress, b.progress)
    else:
        out["temporal"] = zero
    if w.segments > 0 and b.seq is not None and bool(b.seq.step_valid.any()):
        out["segments"] = segment_loss(model, b.seq)
    else:
        out["segments"] = zero
    if w.policy > 0:
        pred = model.act(vis, head_txt, state, policy_keypoints(model, b, vis, head_txt))  # (B, H, A) normalised
        out["policy"] = F.smooth_l1_loss(pred, actions)
    else:
        out["policy"] = zero
    if w.geometry > 0 and b.geo_state is not None:
        geo = model.policy.direct_path(model.normalize_state(b.geo_state), b.geo_keypoints)
        out["geometry"] = F.smooth_l1_loss(geo, model.normalize_actions(b.geo_actions))
    else:
        out["geometry"] = zero
    out.update(technique_losses(model, b, w, robust, vis, txt, emb, zero))
    out["total"] = (w.contrastive * out["contrastive"] + w.spatial * out["spatial"] + w.temporal * out["temporal"]
                    + w.segments * out["segments"] + w.policy * out["policy"] + w.phrase * out["phrase"]
                    + w.target * out["target"] + w.geometry * out["geometry"] + w.affordance * out["affordance"])
    for name in TECHNIQUE_TERMS:
        if getattr(w, name) > 0:
            out["total"] = out["total"] + getattr(w, name) * out[name]
    return out


def policy_keypoints(model: TrimodalModel, b: Batch, vis, txt: TextOutput) -> Tensor | None:
    """The keypoints the policy trains on (``heads.policy_keypoints``): the model's own, and on
    the frames ``b.teacher`` marks those of the true masks, each role where the frame has its
    mask. -> (B, 2, 3), or None without keypoints."""
    if not model.cfg.heads.policy_keypoints:
        return None
    own = model.role_keypoints(vis, txt)  # (B, 2, 3)
    if b.teacher is None or b.target_masks is None:
        return own
    true = true_keypoints(torch.stack([b.masks, b.target_masks], dim=1))  # (B, 2, 3)
    has = torch.stack([b.has_mask, b.has_target], dim=1)  # (B, 2)
    # A pick or a push has no place: where the object is in view, its true place keypoint is
    # "nothing there".
    has[:, 1] |= b.has_mask
    pick = b.teacher[:, None] & has  # (B, 2)
    return torch.where(pick[..., None], true.to(own.dtype), own)


TECHNIQUE_TERMS = ("object_level", "patch_word", "consistency", "adversarial")


def technique_losses(model: TrimodalModel, b: Batch, w: ObjectiveWeights, robust: RobustnessConfig,
                     vis, txt: TextOutput, emb, zero: Tensor) -> dict[str, Tensor]:
    """The optional alignment terms (``zero`` where off or without the data they need)."""
    out = {name: zero for name in TECHNIQUE_TERMS}
    vl_ids = model.loss.pair_ids("vl", b.ids, b.motion_ids)  # None: instance positives (pair_loss's own)
    log_scale = model.loss.temps["vl"].scale()
    if w.object_level > 0 and b.phrase_obj is not None and bool((b.phrase_obj >= 0).sum() > 1):
        if model.vision.patch_dim != model.vision.pooled_dim:
            raise ValueError(f"objective.object_level needs patch features as wide as the pooled one "
                             f"({model.vision.patch_dim} vs {model.vision.pooled_dim}) for proj_vision")
        sel = b.phrase_obj >= 0
        obj = model.proj_vision(mask_pool(vis.patches[sel], b.phrase_masks[sel], vis.grid))  # (n, D)
        phr = model.proj_text(model.encode_text(b.phrase_ids[sel], b.phrase_attn[sel]).pooled)  # (n, D)
        ids = b.phrase_obj[sel]
        out["object_level"] = 0.5 * (info_nce_directional(obj, phr, log_scale, ids, ids)
                                     + info_nce_directional(phr, obj, log_scale, ids, ids))
    if w.patch_word > 0:
        ids = vl_ids if vl_ids is not None else torch.arange(len(b.ids), device=b.ids.device)
        out["patch_word"] = patch_word_loss(model.patch_proj(vis.patches), model.word_proj(txt.tokens), txt.mask,
                                            ids, log_scale)
    if w.consistency > 0:
        view = model.proj_vision(model.encode_image(augment_images(b.images, robust), fine=False).pooled)
        out["consistency"] = consistency_loss(emb.vision, view)
    if w.adversarial > 0:
        text = emb.text.detach()

        def attack_loss(pixels: Tensor) -> Tensor:
            return model.loss.pair_loss("vl", model.proj_vision(model.encode_image(pixels, fine=False).pooled), text,
                                        vl_ids)

        adv = adversarial_images(b.images, attack_loss, robust)
        out["adversarial"] = model.loss.pair_loss("vl", model.proj_vision(model.encode_image(adv, fine=False).pooled),
                                                  emb.text, vl_ids)
    return out


def grounding_loss(model: TrimodalModel, vis, txt: TextOutput, masks: Tensor, sel: Tensor,
                   role: int | Tensor = 0) -> Tensor:
    """BCE + Dice of the text's mask (of ``role``) against ``masks`` (B, h, w) on the samples ``sel`` (B,) bool.
    Per-sample loss, zero where there is no mask, averaged over the whole batch: the same
    normalisation on one process and on N ranks with a shard each."""
    h, wd = masks.shape[-2:]
    if isinstance(role, Tensor):
        role = role[sel]
    g = model.ground(vis.select(sel), txt.select(sel), (h, wd), role)
    target = masks[sel].float()
    per = F.binary_cross_entropy_with_logits(g.mask_logits, target, reduction="none").flatten(1).mean(1) \
        + dice_loss(g.mask_logits, target)  # (B_masked,)
    return torch.zeros(len(sel), device=per.device, dtype=per.dtype).masked_scatter(sel, per).mean()


def pixel_targets(px: Tensor, hw: tuple[int, int], sigma: float) -> Tensor:
    """(B, 2) [row, col] -> (B, H*W) a normalised Gaussian around each pixel."""
    h, w = hw
    rows = torch.arange(h, device=px.device, dtype=torch.float32)[:, None]
    cols = torch.arange(w, device=px.device, dtype=torch.float32)[None]
    d2 = (rows[None] - px[:, 0, None, None]) ** 2 + (cols[None] - px[:, 1, None, None]) ** 2  # (B, H, W)
    g = torch.exp(-0.5 * d2 / sigma**2).flatten(1)
    return g / g.sum(1, keepdim=True)


def role_losses(model: TrimodalModel, vis, txt: TextOutput, role: int, masks: Tensor | None, has_mask: Tensor | None,
                px: Tensor, sigma: float, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """One role's mask loss (BCE + Dice where ``has_mask``) and affordance loss (cross-entropy of
    the logits' softmax over pixels against ``pixel_targets`` where ``px`` is finite), from one
    grounding pass over the samples that have either. Each is averaged over the whole batch."""
    has_px = torch.isfinite(px).all(1)  # (B,)
    if has_mask is None or masks is None:
        masks, has_mask = None, torch.zeros_like(has_px)
    sel = has_px | has_mask
    zero = px.new_zeros(())
    if not bool(sel.any()):
        return zero, zero
    h, wd = hw
    g = model.ground(vis.select(sel), txt.select(sel), (h, wd), role)
    logits = g.mask_logits  # (n, H, W)
    n = len(sel)
    m_sel, p_sel = has_mask[sel], has_px[sel]
    mask_loss = zero
    if bool(m_sel.any()):
        target = masks[sel][m_sel].float()
        per = F.binary_cross_entropy_with_logits(logits[m_sel], target, reduction="none").flatten(1).mean(1) \
            + dice_loss(logits[m_sel], target)
        mask_loss = per.sum() / n
    aff = zero
    if bool(p_sel.any()):
        logp = logits[p_sel].float().flatten(1).log_softmax(1)  # (m, H*W)
        aff = -(pixel_targets(px[sel][p_sel], (h, wd), sigma) * logp).sum(1).sum() / n
    return mask_loss, aff


def segment_loss(model: TrimodalModel, sq: SequenceBatch) -> Tensor:
    """Cross-entropy of each step's start and end frame over the motion. The frames' vision
    embeddings are taken without gradient (the per-frame objective trains the encoder; this
    trains the localiser on top at a fraction of the cost)."""
    e, t = sq.mask.shape
    with torch.no_grad():
        vis = model.encode_image(sq.images, fine=False)
        frames = model.proj_vision(vis.pooled).view(e, t, -1)  # (E, T, D)
    seq = model.frame_features(frames, model.normalize_state(sq.state))  # (E, T, D)
    k = sq.step_ids.shape[1]
    st = model.encode_steps(sq.step_ids, sq.step_attn)
    steps = model.proj_text(st.pooled).view(e, k, -1)  # (E, K, D)
    start, end = model.temporal.localize_steps(seq, sq.mask, steps)  # (E, K, T)
    v = sq.step_valid
    return 0.5 * (F.cross_entropy(start[v], sq.start[v]) + F.cross_entropy(end[v], sq.end[v]))
