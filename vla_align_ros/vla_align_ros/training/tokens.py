"""A token table: each distinct text tokenised once (robot data repeats its instructions
constantly), looked up per batch and trimmed to the batch's longest text."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..model.trimodal import TrimodalModel


class TokenTable:
    """Each distinct text of ``texts`` (and the empty text, the padding of missing steps)
    tokenised once, padded to a fixed width."""

    def __init__(self, model: TrimodalModel, texts: Sequence[str]) -> None:
        uniq = sorted(set(texts) | {""})
        self.row = {t: i for i, t in enumerate(uniq)}
        tok = model.tokenize(uniq)
        self.ids, self.mask = tok["input_ids"], tok["attention_mask"]  # (U, T)

    def __call__(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts (each one given to the constructor) -> ids, attention mask: (N, W), W the
        longest of them."""
        r = torch.tensor([self.row[t] for t in texts])
        ids, mask = self.ids[r], self.mask[r]
        width = max(int(mask.sum(-1).max()), 1)
        return ids[..., :width], mask[..., :width]
