"""Build the model and its contrastive loss from the config tree (``vla_align_ros.config``).

``create_model`` is the one place a ``TrimodalModel`` is made from a ``ModelConfig``: the
trainer, the evaluation report, checkpoint loading and the demos all call it. ``create_loss``
builds the trimodal contrastive loss that config describes on its own (the model holds the same
module as ``model.loss``: its temperatures are trained and saved with the weights).
"""

from __future__ import annotations

from ..config import ModelConfig
from ..losses.trimodal import TrimodalLoss
from .trimodal import TrimodalModel


def create_model(cfg: ModelConfig, load_pretrained: bool = True) -> TrimodalModel:
    """The trimodal model ``cfg`` describes; ``load_pretrained=False`` builds the backbones
    without their pretrained weights (a checkpoint's weights replace them anyway)."""
    return TrimodalModel(cfg, load_pretrained)


def create_loss(cfg: ModelConfig) -> TrimodalLoss:
    """The trimodal contrastive loss of ``cfg.loss`` in the shared embedding width."""
    return TrimodalLoss(cfg.loss, cfg.projection.embed_dim)
