"""Encoders, projections, heads and the trimodal model (pure PyTorch + transformers)."""

from .action import ActionEncoder
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, verify_checkpoint
from .factory import create_loss, create_model
from .heads import (PolicyHead, SpatialGroundingHead, SpatialOutput, StepState, TemporalGroundingHead,
                    decode_monotonic_steps, decode_segment, masks_to_boxes)
from .projection import Projection
from .text import TextEncoder, TextOutput, minilm_path
from .trimodal import Embeddings, TrimodalModel
from .vision import VisionEncoder, VisionOutput, efficientnet_lite0_weights_path

__all__ = [
    "ActionEncoder", "CheckpointError", "create_loss", "create_model", "load_checkpoint", "save_checkpoint", "verify_checkpoint",
    "PolicyHead", "SpatialGroundingHead", "SpatialOutput", "StepState", "TemporalGroundingHead",
    "decode_monotonic_steps", "decode_segment", "masks_to_boxes", "Projection", "TextEncoder", "TextOutput", "minilm_path",
    "Embeddings", "TrimodalModel", "VisionEncoder", "VisionOutput", "efficientnet_lite0_weights_path",
]
