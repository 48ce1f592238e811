"""The full training objective on a batch: trimodal contrastive + spatial grounding (masks) +
temporal grounding (active step and progress) + policy (action-chunk regression) + the optional
alignment techniques.

Each term is a registered ``LossTerm`` (``LOSS_TERMS``): its name is its log key and its weight
in ``ObjectiveWeights``, it lists the ``Batch`` fields it reads and computes its loss from the
forward pass the terms share (``TermInputs``). ``compute_losses`` runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import TypeVar

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


@dataclass(kw_only=True)
class Batch:
    """One step's samples, its fields grouped by the loss term that reads them (``LossTerm.fields``);
    the first group is read by the forward pass every term shares (``TermInputs``)."""

    # the shared forward pass: encoders, embeddings, the step phrases the heads read
    images: Tensor  # (B, H, W, 3) uint8
    input_ids: Tensor  # (B, T)
    attention_mask: Tensor  # (B, T)
    actions: Tensor  # (B, H, A) raw
    state: Tensor  # (B, S) raw
    step_ids: Tensor  # (B, K, Ts) token ids of each step
    step_attn: Tensor  # (B, K, Ts)
    step_index: Tensor  # (B,)
    # contrastive
    ids: Tensor  # (B,) composition ids
    motion_ids: Tensor  # (B,) motion ids
    neg_ids: Tensor | None = None  # (B*R, Tn) one-attribute variants of each instruction
    neg_attn: Tensor | None = None  # (B*R, Tn)
    # spatial: the object's mask
    masks: Tensor  # (B, h, w) bool
    has_mask: Tensor  # (B,) bool
    # target: where the active step puts its object
    target_masks: Tensor | None = None  # (B, h, w) bool
    has_target: Tensor | None = None  # (B,) bool
    # affordance: the demonstration's keyframe pixels (data.keyframes)
    pick_px: Tensor | None = None  # (B, 2) [row, col] where the active step acts; NaN none
    place_px: Tensor | None = None  # (B, 2) where it puts the object down; NaN none
    # phrase: one object named on its own
    phrase_ids: Tensor | None = None  # (B, Tp) one object phrase per frame
    phrase_attn: Tensor | None = None  # (B, Tp)
    phrase_masks: Tensor | None = None  # (B, h, w) bool
    has_phrase: Tensor | None = None  # (B,) bool
    offset: int = 0  # the first sample's position in the global batch (this rank's share starts there)
    # object_level: the phrase's object
    phrase_obj: Tensor | None = None  # (B,) long, the phrase's object in the label order (-1: none)
    # temporal: the active step and the progress through it
    step_valid: Tensor  # (B, K) bool
    progress: Tensor  # (B,)
    events: Tensor | None = None  # (B, 2) grasps and releases since the instruction (heads.ground_steps)
    # segments: whole motions, for temporal localisation of steps
    seq: "SequenceBatch | None" = None
    # policy
    teacher: Tensor | None = None  # (B,) bool: the policy trains on this frame's true keypoints
    # geometry: frames for objective.geometry
    geo_state: Tensor | None = None  # (G, S) raw
    geo_keypoints: Tensor | None = None  # (G, 2, 3) their true keypoints
    geo_actions: Tensor | None = None  # (G, H, A) raw


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


SHARED_FIELDS = ("images", "input_ids", "attention_mask", "actions", "state", "step_ids", "step_attn", "step_index")


class TermInputs:
    """One batch's forward pass that the terms share (it reads the batch's ``SHARED_FIELDS``): the
    encoders' outputs and the embeddings (computed up front), and on first use the step phrases,
    the text the heads read and the vision-text pair's positives and scale."""

    def __init__(self, model: TrimodalModel, batch: Batch, weights: ObjectiveWeights,
                 robust: RobustnessConfig) -> None:
        self.model, self.batch, self.weights, self.robust = model, batch, weights, robust
        self.vis = model.encode_image(batch.images)
        self.txt = model.encode_text(batch.input_ids, batch.attention_mask)
        self.actions = model.normalize_actions(batch.actions)  # (B, H, A)
        self.state = model.normalize_state(batch.state)  # (B, S)
        self.emb = model.embed(self.vis, self.txt, self.actions, self.state)
        self.zero = self.emb.vision.new_zeros(())

    @cached_property
    def steps(self) -> TextOutput:
        """Every sample's K step phrases (B*K texts), for the step heads and the temporal loss."""
        return self.model.encode_steps(self.batch.step_ids, self.batch.step_attn)

    @cached_property
    def head_txt(self) -> TextOutput:
        """What the spatial and policy heads read: the active step's phrase (``heads.ground_steps``;
        the true step here) or the whole instruction."""
        return self.model.step_text(self.steps, self.batch.step_index) if self.model.cfg.heads.ground_steps \
            else self.txt

    @cached_property
    def vl_ids(self) -> Tensor | None:
        """The vision-text pair's positive ids (None: instance positives, ``pair_loss``'s own)."""
        return self.model.loss.pair_ids("vl", self.batch.ids, self.batch.motion_ids)

    @cached_property
    def vl_log_scale(self) -> Tensor:
        """The vision-text pair's log inverse temperature: ()."""
        return self.model.loss.temps["vl"].scale()

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.batch.images.shape[1:3])  # type: ignore[return-value]


class LossTerm:
    """One term of the objective. ``name`` is its log key and its weight's field in
    ``ObjectiveWeights``; ``fields`` the ``Batch`` fields it reads besides the shared forward
    pass's. ``active`` says whether this batch computes it (weight > 0 and its data present; an
    inactive term logs zero); ``compute`` returns {name: () loss}, and the names of ``claims``
    when it computes those terms in the same pass."""

    name: str = ""
    fields: tuple[str, ...] = ()

    def weight(self, f: TermInputs) -> float:
        return float(getattr(f.weights, self.name))

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0

    def claims(self, f: TermInputs) -> tuple[str, ...]:
        """Other terms this one computes in this batch (they are not computed on their own)."""
        return ()

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        raise NotImplementedError


LOSS_TERMS: dict[str, LossTerm] = {}  # in the order they are computed (and logged)
# The order the weighted terms are added into the total (float addition is not associative: the
# shipped checkpoint was trained with this order); registered terms not named here come after.
TOTAL_ORDER = ("contrastive", "spatial", "temporal", "segments", "policy", "phrase", "target", "geometry",
               "affordance", "object_level", "patch_word", "consistency", "adversarial")
TermType = TypeVar("TermType", bound=type[LossTerm])


def register_term(cls: TermType) -> TermType:
    """Class decorator: adds an instance of the term to ``LOSS_TERMS`` (after the ones before it)."""
    term = cls()
    if not term.name or term.name in LOSS_TERMS:
        raise ValueError(f"loss term {cls.__name__}: name {term.name!r} is empty or taken")
    if term.name not in {f.name for f in fields(ObjectiveWeights)}:
        raise ValueError(f"loss term {term.name!r}: ObjectiveWeights has no weight of that name")
    LOSS_TERMS[term.name] = term
    return cls


@register_term
class Contrastive(LossTerm):
    """The trimodal contrastive loss (``model.loss``), with one-attribute text negatives."""

    name = "contrastive"
    fields = ("ids", "motion_ids", "neg_ids", "neg_attn")

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, m = f.batch, f.model
        text_negs = None
        if b.neg_ids is not None:
            bsz = b.input_ids.shape[0]
            text_negs = m.proj_text(m.encode_text(b.neg_ids, b.neg_attn).pooled).view(bsz, -1, m.embed_dim)  # (B, R, D)
        return {self.name: m.loss(f.emb.as_dict(), b.ids, b.motion_ids, text_negs).total}


@register_term
class Spatial(LossTerm):
    """The instruction's (or active step's) mask of its object: BCE + Dice."""

    name = "spatial"
    fields = ("masks", "has_mask")

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0 and bool(f.batch.has_mask.any())

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        return {self.name: grounding_loss(f.model, f.vis, f.head_txt, f.batch.masks, f.batch.has_mask)}


@register_term
class Affordance(LossTerm):
    """Each role's map against the demonstration's keyframe pixel (pick: role 0, place: role 1),
    from the same grounding pass as that role's mask, so it computes ``spatial`` and ``target``
    too."""

    name = "affordance"
    fields = ("pick_px", "place_px")

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0 and f.batch.pick_px is not None

    def claims(self, f: TermInputs) -> tuple[str, ...]:
        return ("spatial", "target") if self.active(f) else ()

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, sigma = f.batch, f.weights.affordance_sigma
        spatial, pick = role_losses(f.model, f.vis, f.head_txt, 0, b.masks, b.has_mask, b.pick_px, sigma, f.image_hw)
        target, place = role_losses(f.model, f.vis, f.head_txt, 1, b.target_masks, b.has_target, b.place_px, sigma,
                                    f.image_hw)
        return {"spatial": spatial, self.name: pick + place, "target": target}


@register_term
class Phrase(LossTerm):
    """The mask of one object named on its own ("the red block")."""

    name = "phrase"
    fields = ("phrase_ids", "phrase_attn", "phrase_masks", "has_phrase", "offset")

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0 and f.batch.has_phrase is not None and bool(f.batch.has_phrase.any())

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, m = f.batch, f.model
        phr = m.encode_text(b.phrase_ids, b.phrase_attn)
        # A phrase alone names one thing in either role: every other frame grounds it as the
        # place, so the place role knows every object's name, including places never trained on.
        roles = (b.offset + torch.arange(len(b.has_phrase), device=b.has_phrase.device)) % 2 \
            if m.cfg.heads.role_pool else 0  # (B,)
        return {self.name: grounding_loss(m, f.vis, phr, b.phrase_masks, b.has_phrase, roles)}


@register_term
class Target(LossTerm):
    """The mask of where the active step puts its object (role 1)."""

    name = "target"
    fields = ("target_masks", "has_target")

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0 and f.batch.has_target is not None and bool(f.batch.has_target.any())

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b = f.batch
        return {self.name: grounding_loss(f.model, f.vis, f.head_txt, b.target_masks, b.has_target, role=1)}


@register_term
class Temporal(LossTerm):
    """Which step is active (cross-entropy) and the progress through it (MSE)."""

    name = "temporal"
    fields = ("step_valid", "progress", "events")

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, m = f.batch, f.model
        bsz, k = b.step_ids.shape[:2]
        step_emb = m.proj_text(f.steps.pooled).view(bsz, k, -1)  # (B, K, D)
        out = m.active_step(f.emb.vision, f.state, step_emb, b.step_valid, b.events)
        return {self.name: F.cross_entropy(out.step_logits, b.step_index) + F.mse_loss(out.progress, b.progress)}


@register_term
class Segments(LossTerm):
    """Where each step of a whole motion starts and ends (``segment_loss``)."""

    name = "segments"
    fields = ("seq",)

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0 and f.batch.seq is not None and bool(f.batch.seq.step_valid.any())

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        assert f.batch.seq is not None
        return {self.name: segment_loss(f.model, f.batch.seq)}


@register_term
class Policy(LossTerm):
    """The action chunk (normalised), smooth L1."""

    name = "policy"
    fields = ("teacher",)

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        keypoints = policy_keypoints(f.model, f.batch, f.vis, f.head_txt)
        pred = f.model.act(f.vis, f.head_txt, f.state, keypoints)  # (B, H, A) normalised
        return {self.name: F.smooth_l1_loss(pred, f.actions)}


@register_term
class Geometry(LossTerm):
    """More frames' chunks from their state and true keypoints (the policy's direct path)."""

    name = "geometry"
    fields = ("geo_state", "geo_keypoints", "geo_actions")

    def active(self, f: TermInputs) -> bool:
        return self.weight(f) > 0 and f.batch.geo_state is not None

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, m = f.batch, f.model
        geo = m.policy.direct_path(m.normalize_state(b.geo_state), b.geo_keypoints)  # (G, H, A)
        return {self.name: F.smooth_l1_loss(geo, m.normalize_actions(b.geo_actions))}


@register_term
class ObjectLevel(LossTerm):
    """Features pooled in an object's mask <-> its phrase (InfoNCE, same object positive)."""

    name = "object_level"
    fields = ("phrase_obj",)

    def active(self, f: TermInputs) -> bool:
        obj = f.batch.phrase_obj
        return self.weight(f) > 0 and obj is not None and bool((obj >= 0).sum() > 1)

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, m = f.batch, f.model
        if m.vision.patch_dim != m.vision.pooled_dim:
            raise ValueError(f"objective.object_level needs patch features as wide as the pooled one "
                             f"({m.vision.patch_dim} vs {m.vision.pooled_dim}) for proj_vision")
        sel = b.phrase_obj >= 0
        obj = m.proj_vision(mask_pool(f.vis.patches[sel], b.phrase_masks[sel], f.vis.grid))  # (n, D)
        phr = m.proj_text(m.encode_text(b.phrase_ids[sel], b.phrase_attn[sel]).pooled)  # (n, D)
        ids, scale = b.phrase_obj[sel], f.vl_log_scale
        return {self.name: 0.5 * (info_nce_directional(obj, phr, scale, ids, ids)
                                  + info_nce_directional(phr, obj, scale, ids, ids))}


@register_term
class PatchWord(LossTerm):
    """The fine-grained patch-word score, InfoNCE over the vision-text positives."""

    name = "patch_word"

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        b, m = f.batch, f.model
        ids = f.vl_ids if f.vl_ids is not None else torch.arange(len(b.ids), device=b.ids.device)
        return {self.name: patch_word_loss(m.patch_proj(f.vis.patches), m.word_proj(f.txt.tokens), f.txt.mask, ids,
                                           f.vl_log_scale)}


@register_term
class Consistency(LossTerm):
    """Two augmented views of a frame embed alike."""

    name = "consistency"

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        m = f.model
        view = m.proj_vision(m.encode_image(augment_images(f.batch.images, f.robust), fine=False).pooled)  # (B, D)
        return {self.name: consistency_loss(f.emb.vision, view)}


@register_term
class Adversarial(LossTerm):
    """The vision-text loss on FGSM/PGD-perturbed frames."""

    name = "adversarial"

    def compute(self, f: TermInputs) -> dict[str, Tensor]:
        m = f.model
        text = f.emb.text.detach()

        def attack_loss(pixels: Tensor) -> Tensor:
            return m.loss.pair_loss("vl", m.proj_vision(m.encode_image(pixels, fine=False).pooled), text, f.vl_ids)

        adv = adversarial_images(f.batch.images, attack_loss, f.robust)
        vision = m.proj_vision(m.encode_image(adv, fine=False).pooled)  # (B, D)
        return {self.name: m.loss.pair_loss("vl", vision, f.emb.text, f.vl_ids)}


def compute_losses(model: TrimodalModel, b: Batch, w: ObjectiveWeights,
                   robust: RobustnessConfig | None = None) -> dict[str, Tensor]:
    """Every registered term's loss (zero where inactive), in ``LOSS_TERMS`` order, and ``total``:
    the weighted sum of the terms with a weight > 0."""
    f = TermInputs(model, b, w, robust or RobustnessConfig())
    claimed = {name for term in LOSS_TERMS.values() for name in term.claims(f)}
    out: dict[str, Tensor] = {}
    for name, term in LOSS_TERMS.items():
        if name not in claimed:
            out.update(term.compute(f) if term.active(f) else {name: f.zero})
        if name == "contrastive" and model.cfg.heads.ground_steps:
            # The heads' step phrases are encoded here, before any head's term: autograd sums the
            # text encoder's gradients in this order, which the shipped checkpoint was trained with.
            f.head_txt
    total: Tensor | None = None
    for name in TOTAL_ORDER + tuple(n for n in LOSS_TERMS if n not in TOTAL_ORDER):
        weight = LOSS_TERMS[name].weight(f)
        if weight > 0:
            total = weight * out[name] if total is None else total + weight * out[name]
    out["total"] = f.zero if total is None else total
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
