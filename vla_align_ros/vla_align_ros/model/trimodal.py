"""The trimodal model: vision, language and action encoders projected into one space, the
pairwise temperatures, and the grounding and policy heads."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..losses.trimodal import TrimodalLoss
from .action import ActionEncoder
from .heads import (FineFeatures, PolicyHead, SpatialGroundingHead, SpatialOutput, StepState,
                    TemporalGroundingHead, mask_keypoints)
from .projection import Projection
from .text import TextEncoder, TextOutput
from .vision import VisionEncoder, VisionOutput


@dataclass
class Embeddings:
    vision: Tensor  # (B, D) unit norm
    text: Tensor  # (B, D)
    action: Tensor  # (B, D)

    def as_dict(self) -> dict[str, Tensor]:
        return {"vision": self.vision, "text": self.text, "action": self.action}


class TrimodalModel(nn.Module):
    def __init__(self, cfg: ModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        # The encoders record the backbone they built in the config (for reloading); that goes
        # into this model's own copy, so the caller's config is untouched and building twice from
        # it under the same seed gives the same weights.
        cfg = copy.deepcopy(cfg)
        self.cfg = cfg
        d = cfg.projection.embed_dim
        self.vision = VisionEncoder(cfg.vision, load_pretrained)
        self.text = TextEncoder(cfg.text, load_pretrained)
        self.action = ActionEncoder(cfg.action)
        self.proj_vision = Projection(self.vision.pooled_dim, cfg.projection)
        self.proj_text = Projection(self.text.out_dim, cfg.projection)
        self.proj_action = Projection(self.action.out_dim, cfg.projection)
        # Token-level projections to the shared width, used by the heads.
        self.patch_proj = nn.Linear(self.vision.patch_dim, d)
        self.word_proj = nn.Linear(self.text.out_dim, d)
        # The words' own embeddings, for what a role names (heads.role_pool).
        self.lexical_proj = nn.Linear(self.text.out_dim, d) if cfg.heads.role_pool else None
        self.spatial = SpatialGroundingHead(d, cfg.heads.num_heads, cfg.heads.fine_channels,
                                            roles=2 if cfg.heads.role_pool else 0,
                                            colour_channels=cfg.heads.colour_channels,
                                            factorised=cfg.heads.factorised_masks)
        self.fine = FineFeatures(cfg.heads.fine_channels) if cfg.heads.fine_channels > 0 else None
        self.temporal = TemporalGroundingHead(d, cfg.heads.temporal_layers, cfg.heads.num_heads,
                                              cfg.heads.max_steps, dropout=cfg.heads.dropout)
        # Robot state beside each frame of a motion, for temporal localisation (gripper
        # open/close and height mark where steps change).
        self.frame_state = nn.Sequential(nn.Linear(max(cfg.action.state_width, 1), d), nn.GELU(), nn.Linear(d, d))
        # Grasps and releases so far, for the active step (heads.ground_steps).
        self.step_events = nn.Linear(2, d) if cfg.heads.ground_steps else None
        self.policy = PolicyHead(d, cfg.action.horizon, cfg.action.action_dim, cfg.action.state_width,
                                 cfg.heads.policy_layers, cfg.heads.num_heads, dropout=cfg.heads.dropout,
                                 keypoints=2 if cfg.heads.policy_keypoints else 0)
        self.loss = TrimodalLoss(cfg.loss, d)
        # Normalisation of actions and robot state, fitted on the training data and saved with
        # the weights so a deployed model sees exactly what it was trained on.
        self.register_buffer("action_mean", torch.zeros(cfg.action.action_dim))
        self.register_buffer("action_std", torch.ones(cfg.action.action_dim))
        self.register_buffer("state_mean", torch.zeros(cfg.action.state_width))
        self.register_buffer("state_std", torch.ones(cfg.action.state_width))

    def normalize_actions(self, actions: Tensor) -> Tensor:
        return (actions - self.action_mean) / self.action_std

    def denormalize_actions(self, actions: Tensor) -> Tensor:
        return actions * self.action_std + self.action_mean

    def normalize_state(self, state: Tensor) -> Tensor:
        return (state - self.state_mean) / self.state_std

    @property
    def embed_dim(self) -> int:
        return self.cfg.projection.embed_dim

    # ---- encoders -------------------------------------------------------------------------
    def encode_image(self, images: Tensor, fine: bool = True) -> VisionOutput:
        """``fine=False``: no fine features (``out.fine`` None), where only the embedding is read."""
        pixels = self.vision.preprocess(images)  # (B, 3, S, S)
        out = self.vision.encode(pixels)
        if self.fine is not None and fine:
            mode = self.cfg.heads.factorised_masks
            if mode != "none":
                out.fine_grey = self.fine(pixels.mean(1, keepdim=True).expand_as(pixels))  # (B, C, S/2, S/2)
            out.fine = out.fine_grey if mode == "all" else self.fine(pixels)  # (B, C, S/2, S/2)
            if self.cfg.heads.colour_channels > 0:
                out.colour = F.avg_pool2d(pixels, 2)  # (B, 3, S/2, S/2)
        return out

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextOutput:
        return self.text(input_ids, attention_mask)

    def encode_steps(self, step_ids: Tensor, step_attn: Tensor) -> TextOutput:
        """(B, K, Ts) token ids and mask of each sample's K step phrases -> their B*K encodings,
        in sample order (``step_text`` picks one per sample)."""
        b, k, ts = step_ids.shape
        return self.encode_text(step_ids.view(b * k, ts), step_attn.view(b * k, ts))

    @staticmethod
    def step_text(steps: TextOutput, step: Tensor) -> TextOutput:
        """Each sample's active step phrase: ``steps`` holds K phrases per sample (B*K texts, in
        sample order), ``step`` (B,) long which one is active -> B texts (heads.ground_steps)."""
        k = len(steps.mask) // len(step)
        return steps.select(torch.arange(len(step), device=step.device) * k + step)

    def tokenize(self, texts: list[str], device: torch.device | str | None = None) -> dict[str, Tensor]:
        return self.text.tokenize(texts, device)

    def embed(self, vis: VisionOutput, txt: TextOutput, actions: Tensor, state: Tensor | None) -> Embeddings:
        return Embeddings(vision=self.proj_vision(vis.pooled), text=self.proj_text(txt.pooled),
                          action=self.proj_action(self.action(actions, state)))

    def embed_text(self, texts: list[str]) -> Tensor:
        """Convenience: strings -> (B, D) unit-norm text embeddings."""
        tok = self.tokenize(texts, next(self.parameters()).device)
        return self.proj_text(self.encode_text(**tok).pooled)

    # ---- heads ----------------------------------------------------------------------------
    def ground(self, vis: VisionOutput, txt: TextOutput, image_hw: tuple[int, int],
               role: int | Tensor = 0) -> SpatialOutput:
        """The phrase's mask. ``role`` (with ``heads.role_pool``; an int or (B,) long): 0 the
        object the text acts on, 1 the place it goes."""
        return self.spatial(self.patch_proj(vis.patches), vis.grid, self.word_proj(txt.tokens), txt.mask, image_hw,
                            fine=vis.fine, role=role, lexical=self._lexical(txt), colour=vis.colour,
                            fine_grey=vis.fine_grey)

    def _lexical(self, txt: TextOutput) -> Tensor | None:
        """The words' own embeddings in the shared width, for role pooling (None without it)."""
        return self.lexical_proj(txt.words) if self.lexical_proj is not None and txt.words is not None else None

    def frame_features(self, vision_emb: Tensor, state: Tensor | None) -> Tensor:
        """Per-frame features of a motion for ``temporal.localize``: (..., D) vision embedding +
        (..., S) normalised state -> (..., D)."""
        if state is None or self.cfg.action.state_dim == 0:
            return vision_emb
        return vision_emb + self.frame_state(state)

    def active_step(self, vision_emb: Tensor, state: Tensor | None, step_emb: Tensor, step_valid: Tensor,
                    events: Tensor | None = None) -> StepState:
        """Which of a multi-step instruction's steps a frame shows: (B, D) vision embedding, (B, S)
        normalised state, (B, K, D) step phrases, (B, K) bool, (B, 2) grasps and releases so far
        (``gripper_events``) or None. With ``heads.ground_steps`` the answer says what the other
        heads read, so it also reads the robot state, the gripper's history and each step's place
        in the instruction: two steps "put the X on the Y" differ only in colours, and a frame
        mid-way shows the second as much as the first; the first release tells them apart."""
        if not self.cfg.heads.ground_steps:
            return self.temporal.step_state(vision_emb, step_emb, step_valid)
        obs = self.frame_features(vision_emb, state)  # (B, D)
        if events is not None and self.step_events is not None:
            obs = obs + self.step_events(events.to(obs.dtype).clamp(max=self.cfg.heads.max_steps))
        order = self.temporal.step_order.weight[: step_emb.shape[1]]  # (K, D)
        return self.temporal.step_state(obs, step_emb + order, step_valid)

    @torch.no_grad()
    def role_keypoints(self, vis: VisionOutput, txt: TextOutput) -> Tensor:
        """Where the instruction's object (role 0) and the place it goes (role 1) are: the
        centroids of their masks (``mask_keypoints``) -> (B, 2, 3). Not trained by the policy's
        loss: the masks learn from masks, the policy learns to read them."""
        hw = vis.fine.shape[-2:]
        logits = torch.stack([self.ground(vis, txt, hw, role=r).mask_logits for r in (0, 1)], dim=1)  # (B, 2, h, w)
        return mask_keypoints(logits)

    def act(self, vis: VisionOutput, txt: TextOutput, state: Tensor | None, keypoints: Tensor | None = None) -> Tensor:
        """-> (B, H, A) action chunk. The policy sees which patches show the instruction's object
        (the spatial head on the patch grid) beside the patches themselves; with
        ``heads.policy_keypoints`` also where the object and the place are (``keypoints``
        (B, 2, 3), by default ``role_keypoints``)."""
        patches, words = self.patch_proj(vis.patches), self.word_proj(txt.tokens)
        relevance = None
        if self.cfg.heads.policy_relevance:  # role 0 at the patch level, pooled as ground() pools it
            g = self.spatial(patches, vis.grid, words, txt.mask, vis.grid, lexical=self._lexical(txt))
            relevance = torch.sigmoid(g.patch_logits.flatten(1))  # (B, Np)
        if self.cfg.heads.policy_keypoints and keypoints is None:
            keypoints = self.role_keypoints(vis, txt)
        return self.policy(patches, words, txt.mask, state, relevance, keypoints, vis.grid)

    def forward(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor, actions: Tensor,
                state: Tensor | None = None) -> Embeddings:
        """images: (B, H, W, 3) uint8 or (B, 3, H, W) float; actions: (B, H, A); state: (B, S)."""
        vis = self.encode_image(images)
        txt = self.encode_text(input_ids, attention_mask)
        return self.embed(vis, txt, actions, state)
