"""Heads on the shared space: spatial grounding, temporal grounding and the policy.

All heads take features already projected to the shared width D (see ``TrimodalModel``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masks_to_boxes(masks: Tensor) -> Tensor:
    """(B, H, W) bool -> (B, 4) [x0, y0, x1, y1] inclusive pixel boxes; all -1 for an empty mask."""
    b, h, w = masks.shape
    rows = masks.any(dim=2)  # (B, H)
    cols = masks.any(dim=1)  # (B, W)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~rows.any(dim=1)
    return torch.where(empty[:, None], torch.full_like(boxes, -1), boxes)


@dataclass
class SpatialOutput:
    patch_logits: Tensor  # (B, gh, gw)
    mask_logits: Tensor  # (B, H, W), upsampled to the image
    score: Tensor  # (B,) in [0, 1]: is the phrase in the image
    word_patch: Tensor  # (B, T, Np) word-to-patch similarities (fine-grained alignment)

    def masks(self, threshold: float = 0.0) -> Tensor:
        return self.mask_logits > threshold

    def boxes(self, threshold: float = 0.0) -> Tensor:
        return masks_to_boxes(self.masks(threshold))


class FineFeatures(nn.Module):
    """A small convolutional branch on the normalised image: (B, 3, S, S) -> (B, C, S/2, S/2).

    Patch tokens locate an object to within a patch (8-16 px); these features carry the colour
    and edges that put the mask boundary on the right pixel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net(pixels)


class SpatialGroundingHead(nn.Module):
    """Phrase tokens attend to patch tokens; the attended phrase vector scores every patch, and
    every pixel of the fine features when the model has them."""

    def __init__(self, dim: int, num_heads: int = 4, fine_channels: int = 0, roles: int = 0,
                 colour_channels: int = 0, factorised: str = "none") -> None:
        super().__init__()
        # the masks of role 1 ("place") or of every role ("all"): shape from the greyscale fine
        # features alone, colour from the colour path alone
        self.factorised = factorised
        self.roles = roles
        if roles > 0:  # attention pooling of the words, one learned query per role; zero = the mean at the start
            self.role_query = nn.Parameter(torch.zeros(roles, dim))
            self.role_key = nn.Linear(dim, dim)
            self.norm_w = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_p = nn.LayerNorm(dim)
        self.query_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.patch_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.logit_bias = nn.Parameter(torch.tensor(-2.0))
        self.score = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        if fine_channels > 0:  # per-pixel scoring in the (narrow) width of the fine features
            self.fine_patch = nn.Linear(dim, fine_channels)
            self.fine_query = nn.Linear(dim, fine_channels)
            self.fine_key = nn.Sequential(nn.GELU(), nn.Conv2d(fine_channels, fine_channels, 1))
        if colour_channels > 0:  # each pixel's colour alone, scored linearly in the phrase (zero at the start)
            self.colour_key = nn.Sequential(nn.Conv2d(3, colour_channels, 1), nn.GELU(),
                                            nn.Conv2d(colour_channels, colour_channels, 1))
            self.colour_query = nn.Linear(dim, colour_channels, bias=False)
            nn.init.zeros_(self.colour_query.weight)

    def pool(self, q: Tensor, word_mask: Tensor, role: int | Tensor, lexical: Tensor | None = None) -> Tensor:
        """Word vectors (B, T, D) -> the phrase (B, D): the mean of the real tokens, or with roles
        a softmax-weighted sum under the query of ``role`` (an int, or (B,) long per sample). The
        words in context say which words name the role; the sum is over ``lexical`` (B, T, D),
        each word's own embedding, when given. The per-pixel mask logits of the fine path are linear
        in the phrase (up to one scale), so a role's mask is then the attention-weighted sum of its
        words' own maps ("yellow" + "dish"), the same in a command never heard before as in the
        phrase said alone."""
        w = word_mask.unsqueeze(-1).to(q.dtype)  # (B, T, 1)
        # Checked on the host: no device round trip on the default path.
        bad_int = isinstance(role, int) and not 0 <= role < max(self.roles, 1)
        if bad_int or (isinstance(role, Tensor) and self.roles == 0):
            raise ValueError(f"role {role}: the head has {self.roles} roles (heads.role_pool gives two)")
        if self.roles == 0:
            return (q * w).sum(1) / w.sum(1).clamp(min=1.0)
        query = self.role_query[role].expand(len(q), -1) if isinstance(role, int) else self.role_query[role]  # (B, D)
        scores = torch.einsum("btd,bd->bt", self.role_key(q), query) / q.shape[-1] ** 0.5  # (B, T)
        attn = scores.masked_fill(~word_mask, float("-inf")).softmax(dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", attn, q if lexical is None else self.norm_w(lexical))

    def forward(self, patches: Tensor, grid: tuple[int, int], words: Tensor, word_mask: Tensor,
                image_hw: tuple[int, int], fine: Tensor | None = None, role: int | Tensor = 0,
                lexical: Tensor | None = None, colour: Tensor | None = None,
                fine_grey: Tensor | None = None) -> SpatialOutput:
        """patches: (B, Np, D), words: (B, T, D), word_mask: (B, T) bool (True = real token),
        fine: (B, C, h, w) full-resolution features or None; role: which role's phrase to ground
        (0: the object acted on; 1: where it goes), with ``roles``; lexical: (B, T, D) the
        words' own embeddings (see ``pool``); colour: (B, 3, h, w) pixels for the colour path;
        fine_grey: (B, C, h, w) fine features of the greyscale image (``factorised``)."""
        b, n_p, d = patches.shape
        gh, gw = grid
        assert gh * gw == n_p, f"grid {grid} does not match {n_p} patches"
        p = self.norm_p(patches)
        q = self.norm_q(words)
        attended, _ = self.cross(q, p, p, need_weights=False)  # (B, T, D)
        q = q + attended
        phrase = self.pool(q, word_mask, role, lexical)  # (B, D)
        key = F.normalize(self.patch_mlp(p), dim=-1)  # (B, Np, D)
        qry = F.normalize(self.query_mlp(phrase), dim=-1)  # (B, D)
        logits = self.logit_scale.exp() * torch.einsum("bnd,bd->bn", key, qry) + self.logit_bias  # (B, Np)
        patch_logits = logits.view(b, gh, gw)
        if fine is None:
            dense = patch_logits[:, None]  # (B, 1, gh, gw)
        else:
            # Patch features, narrowed and upsampled to the fine grid, added to it, then scored per pixel.
            c = fine.shape[1]
            grey = self.factorised != "none" and fine_grey is not None
            if grey and (self.factorised == "all" or (isinstance(role, int) and role == 1)):
                keys_in = fine_grey
            else:
                keys_in = fine + F.interpolate(self.fine_patch(p).transpose(1, 2).reshape(b, c, gh, gw),
                                               size=fine.shape[-2:], mode="bilinear", align_corners=False)  # (B, C, h, w)
                if grey and isinstance(role, Tensor):
                    keys_in = torch.where((role == 1)[:, None, None, None], fine_grey, keys_in)
            fkey = F.normalize(self.fine_key(keys_in), dim=1)  # (B, C, h, w)
            fq = F.normalize(self.fine_query(phrase), dim=-1)  # (B, C)
            dense = (self.logit_scale.exp() * torch.einsum("bchw,bc->bhw", fkey, fq) + self.logit_bias)[:, None]
            if colour is not None and hasattr(self, "colour_key"):
                ckey = F.normalize(self.colour_key(colour), dim=1)  # (B, Cc, h, w)
                dense = dense + torch.einsum("bchw,bc->bhw", ckey, self.colour_query(phrase))[:, None]
        mask_logits = F.interpolate(dense, size=image_hw, mode="bilinear", align_corners=False)[:, 0]  # (B, H, W)
        attn = logits.softmax(dim=1)  # (B, Np)
        region = torch.einsum("bn,bnd->bd", attn, p)  # (B, D)
        score = torch.sigmoid(self.score(torch.cat([phrase, region], dim=1)))[:, 0]  # (B,)
        word_patch = torch.einsum("btd,bnd->btn", F.normalize(words, dim=-1), F.normalize(patches, dim=-1))
        return SpatialOutput(patch_logits=patch_logits, mask_logits=mask_logits, score=score, word_patch=word_patch)


@dataclass
class StepState:
    step_logits: Tensor  # (B, K) which step is active (masked steps at -inf)
    progress: Tensor  # (B,) progress of the active step in [0, 1]


def decode_segment(start_logits: Tensor, end_logits: Tensor, mask: Tensor) -> Tensor:
    """Best segment with start <= end over valid frames.

    start_logits, end_logits: (B, T), mask: (B, T) bool -> (B, 2) long [start, end] indices.
    """
    neg = torch.finfo(start_logits.dtype).min
    s = start_logits.masked_fill(~mask, neg)
    e = end_logits.masked_fill(~mask, neg)
    pair = s[:, :, None] + e[:, None, :]  # (B, T, T), [i, j] = start i, end j
    t = s.shape[1]
    valid = torch.ones(t, t, dtype=torch.bool, device=s.device).triu()
    pair = pair.masked_fill(~valid, neg)
    flat = pair.flatten(1).argmax(1)
    return torch.stack([flat // t, flat % t], dim=1)


def decode_monotonic_steps(step_logits: Tensor) -> Tensor:
    """Most likely step sequence that never goes back, over the frames of one instruction in time
    order (Viterbi): the steps of an instruction are done in order, so a step once finished does
    not become active again. step_logits: (T, K) -> (T,) long."""
    logp = step_logits.float().log_softmax(dim=-1)  # (T, K); masked steps stay at -inf
    t, k = logp.shape
    score = logp[0].clone()
    back = torch.zeros(t, k, dtype=torch.long)
    for i in range(1, t):
        best, arg = score.cummax(dim=0)  # best predecessor j <= k
        back[i] = arg
        score = best + logp[i]
    path = torch.empty(t, dtype=torch.long)
    path[-1] = int(score.argmax())
    for i in range(t - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


class TemporalGroundingHead(nn.Module):
    """Two questions about time.

    ``step_state``: given the current observation (B, D) and the embeddings of the K steps of
    a multi-step instruction (B, K, D), which step is active and how far along it is (online).
    ``localize``: given the observations of a whole motion (B, T, D) and a phrase (B, D), the
    frames where the phrase happens (start/end logits); ``localize_steps`` does it for the K
    ordered steps of one instruction at once (offline, over a recording).
    Positions in time enter as the fraction of the sequence, so a motion sampled at 10 or at
    40 frames is the same motion.
    """

    def __init__(self, dim: int, num_layers: int = 1, num_heads: int = 4, max_steps: int = 8,
                 dropout: float = 0.0) -> None:
        super().__init__()
        # No bias on the step logit: a softmax over steps ignores a shared shift (its gradient is 0).
        self.step_mlp = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, 1, bias=False))
        self.progress_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.film = nn.Linear(dim, 2 * dim)
        self.time_in = nn.Sequential(nn.Linear(1, dim), nn.GELU(), nn.Linear(dim, dim))
        self.step_order = nn.Embedding(max_steps, dim)  # "the k-th step of the instruction"
        # Start/end logits are a softmax over time: a shift shared by all frames changes nothing,
        # so no biases here (their gradient would be exactly zero, and Adam would turn float
        # noise into full-size random steps); a final norm keeps per-frame offsets meaningful.
        layer = nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True, bias=False)
        self.seq = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.seq_norm = nn.LayerNorm(dim, bias=False)
        self.start_end = nn.Linear(dim, 2, bias=False)

    def step_state(self, obs: Tensor, steps: Tensor, step_mask: Tensor) -> StepState:
        """obs: (B, D), steps: (B, K, D), step_mask: (B, K) bool."""
        b, k, d = steps.shape
        o = obs[:, None].expand(b, k, d)
        logits = self.step_mlp(torch.cat([o, steps, o * steps], dim=-1))[..., 0]  # (B, K)
        logits = logits.masked_fill(~step_mask, float("-inf"))
        weights = logits.softmax(dim=1)  # (B, K)
        active = torch.einsum("bk,bkd->bd", weights, steps)  # (B, D)
        progress = torch.sigmoid(self.progress_mlp(torch.cat([obs, active], dim=-1)))[:, 0]
        return StepState(step_logits=logits, progress=progress)

    def localize(self, seq: Tensor, seq_mask: Tensor, phrase: Tensor) -> tuple[Tensor, Tensor]:
        """seq: (B, T, D), seq_mask: (B, T) bool (valid frames first), phrase: (B, D) -> start,
        end logits (B, T)."""
        n = seq_mask.sum(1, keepdim=True).clamp(min=2).to(seq.dtype)  # (B, 1)
        frac = torch.arange(seq.shape[1], device=seq.device, dtype=seq.dtype)[None] / (n - 1)  # (B, T)
        gamma, beta = self.film(phrase).chunk(2, dim=-1)  # (B, D) each
        x = seq * (1 + gamma[:, None]) + beta[:, None] + self.time_in(frac[..., None])
        x = self.seq_norm(self.seq(x, src_key_padding_mask=~seq_mask))
        se = self.start_end(x)  # (B, T, 2)
        neg = torch.finfo(se.dtype).min
        start = se[..., 0].masked_fill(~seq_mask, neg)
        end = se[..., 1].masked_fill(~seq_mask, neg)
        return start, end

    def localize_steps(self, seq: Tensor, seq_mask: Tensor, steps: Tensor) -> tuple[Tensor, Tensor]:
        """The K ordered steps of each instruction. seq: (B, T, D), seq_mask: (B, T), steps:
        (B, K, D) -> start, end logits (B, K, T)."""
        b, t, d = seq.shape
        k = steps.shape[1]
        if k > self.step_order.num_embeddings:
            raise ValueError(f"{k} steps exceed heads.max_steps={self.step_order.num_embeddings}")
        phrase = steps + self.step_order.weight[:k]  # (B, K, D)
        start, end = self.localize(seq[:, None].expand(b, k, t, d).reshape(b * k, t, d),
                                   seq_mask[:, None].expand(b, k, t).reshape(b * k, t), phrase.reshape(b * k, d))
        return start.view(b, k, t), end.view(b, k, t)


FOURIER_BANDS = 4


def fourier_xy(xy: Tensor, bands: int = FOURIER_BANDS) -> Tensor:
    """Image coordinates (..., 2) in [-1, 1] -> (..., 4 * bands) sines and cosines at
    frequencies pi, 2 pi, 4 pi, ...: a position a linear layer can read to a fraction of a patch."""
    freq = math.pi * 2.0 ** torch.arange(bands, device=xy.device, dtype=xy.dtype)  # (F,)
    ang = xy[..., None] * freq  # (..., 2, F)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


def grid_centres(gh: int, gw: int, device: torch.device | None = None) -> Tensor:
    """(gh * gw, 2) [x, y] centres of a row-major grid's cells in [-1, 1]."""
    ys = (torch.arange(gh, device=device) + 0.5) / gh * 2 - 1
    xs = (torch.arange(gw, device=device) + 0.5) / gw * 2 - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)


def mask_keypoints(mask_logits: Tensor) -> Tensor:
    """Where each mask is: (B, K, h, w) logits -> (B, K, 3) [x, y, log mass]. [x, y] is the
    centroid under the softmax of the logits over the pixels, in [-1, 1] image coordinates: the
    peak region decides it, and a faint second blob barely moves it (the sigmoid-weighted centroid
    sat 4 px off where this one sits 1 px off). The log of the mean mask probability, floored at
    ``MIN_LOG_MASS``, says whether anything is there. An empty mask gives the image centre."""
    b, k, h, w = mask_logits.shape
    flat = mask_logits.float().flatten(2)  # (B, K, h*w)
    xy = flat.softmax(dim=-1) @ grid_centres(h, w, mask_logits.device)  # (B, K, 2)
    mass = torch.sigmoid(flat).mean(-1, keepdim=True).clamp(min=1e-12)  # (B, K, 1)
    # float32 whatever the logits' dtype: bf16 would blur the highest Fourier band (8 pi).
    return torch.cat([xy, mass.log().clamp(min=MIN_LOG_MASS)], dim=-1)


MIN_LOG_MASS = -8.0  # log of a mask's mean probability: below this, an object is not in view


def keypoint_features(keypoints: Tensor) -> Tensor:
    """(B, K, 3) keypoints -> (B, K, 4F + 1) float32: the position's Fourier features and the log
    mass, what the policy reads of each keypoint."""
    keypoints = keypoints.float()
    return torch.cat([fourier_xy(keypoints[..., :2]), keypoints[..., 2:]], dim=-1)


def true_keypoints(masks: Tensor) -> Tensor:
    """``mask_keypoints`` of true masks: (B, K, h, w) bool -> (B, K, 3)."""
    return mask_keypoints(masks.float() * 20.0 - 10.0)


class PolicyHead(nn.Module):
    """H learned queries cross-attend to [state token, instruction tokens, patch tokens] and
    decode an action chunk (B, H, A). With ``keypoints`` K, K more memory tokens say where the
    instruction's objects are (``mask_keypoints``), and every patch token carries its image
    position."""

    def __init__(self, dim: int, horizon: int, action_dim: int, state_dim: int, num_layers: int = 2,
                 num_heads: int = 4, dropout: float = 0.0, keypoints: int = 0) -> None:
        super().__init__()
        self.keypoints = keypoints
        if keypoints > 0:
            self.kp_in = nn.Sequential(nn.Linear(4 * FOURIER_BANDS + 1, dim), nn.GELU(), nn.Linear(dim, dim))
            self.kp_type = nn.Parameter(torch.zeros(keypoints, dim))
            self.patch_pos = nn.Linear(4 * FOURIER_BANDS, dim)
            # A direct path, state + keypoints -> chunk: the motion is mostly "from where the hand
            # is to where the object is", which an MLP learns far faster than the decoder.
            width = 2 * dim
            self.direct = nn.Sequential(nn.Linear(max(state_dim, 1) + keypoints * (4 * FOURIER_BANDS + 3), width),
                                        nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                        nn.Linear(width, horizon * action_dim))
        self.horizon, self.action_dim = horizon, action_dim
        self.queries = nn.Parameter(torch.randn(1, horizon, dim) * 0.02)
        # Joint angles -> where the hand is takes a non-linear map (forward kinematics).
        self.state_in = nn.Sequential(nn.Linear(max(state_dim, 1), dim), nn.GELU(), nn.Linear(dim, dim))
        self.state_dim = state_dim
        self.type_emb = nn.Parameter(torch.zeros(3, dim))  # state / text / image token types
        self.relevance_emb = nn.Parameter(torch.zeros(dim))  # scaled by how well a patch matches the phrase
        layer = nn.TransformerDecoderLayer(dim, num_heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, action_dim))

    def _state(self, state: Tensor | None, like: Tensor) -> Tensor:
        """The robot state, or zeros (B, 1) for a head without one (``like``: (B, ...))."""
        if state is None or self.state_dim == 0:
            return like.new_zeros(len(like), max(self.state_dim, 1))
        return state

    def direct_path(self, state: Tensor | None, keypoints: Tensor, features: Tensor | None = None) -> Tensor:
        """The state + keypoints path alone: (B, S) normalised state, (B, K, 3) -> (B, H, A).
        ``features``: ``keypoint_features(keypoints)`` when the caller has them already."""
        keypoints = keypoints.float()
        kp = keypoint_features(keypoints) if features is None else features  # (B, K, 4F + 1)
        state = self._state(state, keypoints)
        out = self.direct(torch.cat([state, kp.flatten(1), keypoints[..., :2].flatten(1)], dim=1))
        return out.view(len(state), self.horizon, self.action_dim)

    def forward(self, patches: Tensor, words: Tensor, word_mask: Tensor, state: Tensor | None,
                relevance: Tensor | None = None, keypoints: Tensor | None = None,
                grid: tuple[int, int] | None = None) -> Tensor:
        """patches: (B, Np, D), words: (B, T, D), word_mask: (B, T) bool, state: (B, S),
        relevance: (B, Np) how much each patch shows the phrase's object (the spatial head's
        patch probabilities), or None; keypoints: (B, K, 3) from ``mask_keypoints`` and grid the
        patch grid, when the head has keypoints."""
        b = patches.shape[0]
        state = self._state(state, patches)
        st = self.state_in(state)[:, None] + self.type_emb[0]  # (B, 1, D)
        img = patches + self.type_emb[2]
        if relevance is not None:
            img = img + relevance[..., None] * self.relevance_emb  # (B, Np, D)
        parts = [st, words + self.type_emb[1], img]
        if self.keypoints > 0:
            if keypoints is None or grid is None or keypoints.shape[1] != self.keypoints:
                raise ValueError(f"the policy head reads {self.keypoints} keypoints and the patch grid")
            parts[2] = img + self.patch_pos(fourier_xy(grid_centres(*grid, patches.device)))
            kp = keypoint_features(keypoints)  # (B, K, 4F + 1)
            parts.append(self.kp_in(kp) + self.kp_type)  # (B, K, D)
            direct = self.direct_path(state, keypoints, kp)
        memory = torch.cat(parts, dim=1)
        pad = torch.zeros(b, memory.shape[1], dtype=torch.bool, device=patches.device)
        pad[:, 1: 1 + words.shape[1]] = ~word_mask
        x = self.decoder(self.queries.expand(b, -1, -1), memory, memory_key_padding_mask=pad)
        out = self.out(x)  # (B, H, A)
        if self.keypoints > 0:
            out = out + direct
        return out
