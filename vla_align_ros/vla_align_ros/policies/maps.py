"""Reading a location out of grounding maps (pure NumPy): a mask's peak blob, and each pixel
kept only for the phrase that scores it highest."""

from __future__ import annotations

import numpy as np

EXCLUDED_LOGIT = -30.0  # sigmoid ~1e-13: a pixel another phrase claims


def exclusive_logits(logits: np.ndarray) -> np.ndarray:
    """(P, H, W) mask logits of P phrases on one image -> the same, with every pixel kept only for
    the phrase that scores it highest (``EXCLUDED_LOGIT`` for the others). A phrase's mask may
    light up everything of its colour; its rival of the other shape scores its own object
    higher, so what is left is the object the phrase names."""
    best = logits.argmax(axis=0)  # (H, W)
    keep = np.arange(len(logits))[:, None, None] == best[None]  # (P, H, W)
    return np.where(keep, logits, logits.dtype.type(EXCLUDED_LOGIT))


def mask_location(logits: np.ndarray, radius: int = 6) -> tuple[float, float, float]:
    """(H, W) mask logits -> (row, col, confidence): the probability-weighted centroid of the
    pixels above 0.5 within ``radius`` of the strongest pixel (a second blob elsewhere does not
    pull it), and the peak probability."""
    h, w = logits.shape
    peak = int(np.argmax(logits))
    pr, pc = divmod(peak, w)
    r0, r1, c0, c1 = max(0, pr - radius), min(h, pr + radius + 1), max(0, pc - radius), min(w, pc + radius + 1)
    win = 1.0 / (1.0 + np.exp(-np.clip(logits[r0:r1, c0:c1].astype(np.float64), -30, 30)))
    wgt = np.where(win > 0.5, win, 0.0)
    conf = float(win.max())
    if wgt.sum() <= 0:
        return float(pr), float(pc), conf
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return float((wgt * rows).sum() / wgt.sum()), float((wgt * cols).sum() / wgt.sum()), conf
