"""Alignment techniques beyond the base objective, each one switch in the training config:

* object level: features pooled inside an object's mask aligned with that object's phrase;
* patch-word level: a fine-grained score (each word's best patch, averaged over the words);
* augmentation consistency: two views of a frame embed alike;
* adversarial images (FGSM with one step, PGD with more) that the vision-text pair must resist;
* a curriculum: single-step, few-object instructions first, everything by a given step.

Pure torch, no ROS. Shapes in comments: B batch, Np patches, T words, D shared width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses.contrastive import multi_positive_ce, positive_mask
from ..sim.tasks import OBJECT_MENTION

@dataclass
class RobustnessConfig:
    """Augmentation ranges (consistency) and the adversary's budget (pixels in [0, 1])."""

    crop_scale: float = 0.85  # a view keeps at least this fraction of the side
    brightness: float = 0.2  # multiplicative jitter, +-
    contrast: float = 0.2
    adv_eps: float = 4.0 / 255.0  # L-inf radius
    adv_steps: int = 1  # 1: FGSM; more: PGD with step 2.5 * eps / steps from a random start

    def __post_init__(self) -> None:
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"robust.crop_scale={self.crop_scale}: must be in (0, 1]")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"robust.{name}={getattr(self, name)}: must be in [0, 1)")
        if not 0 < self.adv_eps < 1 or self.adv_steps < 1:
            raise ValueError(f"robust.adv_eps={self.adv_eps}, robust.adv_steps={self.adv_steps}: "
                             "need 0 < adv_eps < 1 and adv_steps >= 1")


@dataclass
class CurriculumConfig:
    """``until``: fraction of the run after which every sample is admitted (0 = no curriculum);
    ``start``: fraction of the samples (the easiest) admitted at step 0."""

    until: float = 0.0
    start: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.until <= 1 or not 0 < self.start <= 1:
            raise ValueError(f"curriculum.until={self.until}, curriculum.start={self.start}: "
                             "need until in [0, 1] and start in (0, 1]")


# ---- object and patch-word levels ---------------------------------------------------------
def mask_pool(patches: Tensor, masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """Mean of the patch features inside each mask, weighted by the patch's covered fraction.
    patches: (B, Np, C), masks: (B, H, W) bool -> (B, C)."""
    w = F.adaptive_avg_pool2d(masks[:, None].float(), grid).flatten(1)  # (B, Np) in [0, 1]
    return (w[..., None] * patches).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-6)


def patch_word_scores(patches: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
    """Fine-grained image-text score: for each word its most similar patch, averaged over the
    text's words. patches: (B, Np, D), words: (B', T, D) unit norm; word_mask: (B', T) bool.
    -> (B, B') scores in [-1, 1] (row: image, column: text)."""
    sim = torch.einsum("ipd,jtd->ijtp", patches, words)  # (B, B', T, Np)
    best = sim.max(dim=-1).values  # (B, B', T)
    m = word_mask.to(best.dtype)[None]  # (1, B', T)
    return (best * m).sum(-1) / m.sum(-1).clamp(min=1)


def patch_word_loss(patches: Tensor, words: Tensor, word_mask: Tensor, ids: Tensor, log_scale: Tensor) -> Tensor:
    """Symmetric multi-positive InfoNCE on the patch-word scores (same ``ids`` are positives)."""
    p = F.normalize(patches, dim=-1)
    w = F.normalize(words, dim=-1)
    s = patch_word_scores(p, w, word_mask.bool())  # (B, B)
    logits = log_scale.exp() * s
    pos = positive_mask(ids, ids)
    return 0.5 * (multi_positive_ce(logits, pos) + multi_positive_ce(logits.T, pos.T))


# ---- robustness ------------------------------------------------------------------------------
def augment_images(images: Tensor, cfg: RobustnessConfig, generator: torch.Generator | None = None) -> Tensor:
    """A random view of each frame: crop-and-resize (same aspect), brightness and contrast.
    images: (B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]. Draws from ``generator`` (CPU)
    or the global generator."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    b = x.shape[0]
    r = torch.rand(b, 5, generator=generator).to(x.device)  # (B, 5) uniforms
    scale = cfg.crop_scale + (1 - cfg.crop_scale) * r[:, 0]  # (B,)
    shift = (1 - scale)[:, None] * (2 * r[:, 1:3] - 1)  # (B, 2) in the free margin
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = 1 + cfg.brightness * (2 * r[:, 3] - 1)
    contrast = 1 + cfg.contrast * (2 * r[:, 4] - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean
    return (x * bright[:, None, None, None]).clamp(0, 1)


def consistency_loss(a: Tensor, b: Tensor) -> Tensor:
    """1 - cosine between two views' unit-norm embeddings (B, D), averaged."""
    return (1 - (a * b).sum(-1)).mean()


def adversarial_images(images: Tensor, loss_of: Callable[[Tensor], Tensor], cfg: RobustnessConfig) -> Tensor:
    """L-inf bounded perturbation that raises ``loss_of(pixels)``: one signed-gradient step of
    size eps (FGSM) or ``adv_steps`` steps of 2.5 eps / steps from a random start (PGD).
    images: (B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1], detached. Only the perturbation
    receives gradient; the model's parameters are not touched."""
    x0 = images.permute(0, 3, 1, 2).float() / 255.0
    eps, steps = cfg.adv_eps, cfg.adv_steps
    if steps == 1:
        delta, alpha = torch.zeros_like(x0), eps
    else:
        delta, alpha = (torch.rand_like(x0) * 2 - 1) * eps, 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_of((x0 + delta).clamp(0, 1)), delta)
        delta = (delta.detach() + alpha * g.sign()).clamp(-eps, eps)
    return (x0 + delta).clamp(0, 1).detach()


# ---- curriculum ------------------------------------------------------------------------------
def instruction_difficulty(text: str, n_steps: int) -> int:
    """Objects named plus steps: a pick or push 2, a place or stack 3, pick-then-place 4,
    two places 6."""
    return len(OBJECT_MENTION.findall(text.lower())) + max(n_steps, 1)


def curriculum_indices(difficulty: Tensor, batch_size: int, seed: int, step: int, total_steps: int,
                       cfg: CurriculumConfig) -> Tensor:
    """The batch of ``step`` drawn from the easiest fraction of the samples, a fraction that grows
    linearly from ``cfg.start`` to 1 at ``cfg.until * total_steps``. A pure function of
    (seed, step), like the plain batches. difficulty: (N,) -> (batch_size,) indices."""
    n = difficulty.numel()
    ramp = max(cfg.until * total_steps, 1.0)
    frac = min(1.0, cfg.start + (1 - cfg.start) * step / ramp)
    order = torch.sort(difficulty, stable=True).indices  # easiest first
    cut = difficulty[order[max(int(round(frac * n)), 1) - 1]]
    pool = order[difficulty[order] <= cut]  # ties at the cut all admitted
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7 * step + 1)
    return pool[torch.randint(len(pool), (batch_size,), generator=g)] if len(pool) < batch_size \
        else pool[torch.randperm(len(pool), generator=g)[:batch_size]]
