"""Object masks without labels: a region grown from a keyframe's pixel with classical image
processing (OpenCV). Objects are read as connected regions of one chroma: the flood fill runs in
CIELAB with a tolerance that lets brightness vary (lit and shaded faces of one object) much more
than colour. The seed moves to the most colourful pixel near the keyframe, since a projected
grasp point can fall a pixel off a small object."""

from __future__ import annotations

import cv2
import numpy as np

L_TOLERANCE = 255  # flood-fill tolerance per channel (8-bit Lab): brightness is free (lit and shaded faces) ...
AB_TOLERANCE = 36  # ... and chroma is held (IoU 0.81 cubes, 0.91 plates against the simulator's masks, seed 0)
MAX_AREA_FRACTION = 0.08  # a region larger than this is the background, not an object
SEED_RADIUS = 2  # px searched around the keyframe pixel for the seed


def grow_region(image: np.ndarray, seed: tuple[float, float], background_stride: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB, seed (row, col) -> (H, W) bool region around it (all False when the
    region floods the background). ``background_stride``: the background colour (the median) is
    taken over every n-th pixel in each direction (per-frame use on large images)."""
    h, w = image.shape[:2]
    lab = cv2.cvtColor(cv2.GaussianBlur(image, (3, 3), 0), cv2.COLOR_RGB2LAB)
    r, c = int(round(seed[0])), int(round(seed[1]))
    r0, r1, c0, c1 = max(r - SEED_RADIUS, 0), min(r + SEED_RADIUS + 1, h), max(c - SEED_RADIUS, 0), min(c + SEED_RADIUS + 1, w)
    if r0 >= r1 or c0 >= c1:
        return np.zeros((h, w), dtype=bool)
    background = np.median(lab[::background_stride, ::background_stride].reshape(-1, 3), axis=0)
    win = lab[r0:r1, c0:c1].astype(np.float32)
    chroma = np.linalg.norm(win[..., 1:] - background[1:], axis=-1)  # (h', w') distance from the table's colour
    dr, dc = np.unravel_index(int(np.argmax(chroma)), chroma.shape)
    mask = np.zeros((h + 2, w + 2), dtype=np.uint8)
    tol = (L_TOLERANCE, AB_TOLERANCE, AB_TOLERANCE)
    cv2.floodFill(lab, mask, (int(c0 + dc), int(r0 + dr)), 0, tol, tol,
                  4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8))
    region = mask[1:-1, 1:-1] > 0
    if region.mean() > MAX_AREA_FRACTION:
        return np.zeros((h, w), dtype=bool)
    return region


def mask_from_peak(image: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The mask the nodes publish: the region grown from the map's strongest pixel (the object
    there, to its edges), or the map's own ``logits > 0`` where no region grows (the peak on the
    background). image: (H, W, 3) uint8; logits: (H, W) -> (H, W) bool."""
    peak = np.unravel_index(int(np.argmax(logits)), logits.shape)
    region = grow_region(image, (float(peak[0]), float(peak[1])), background_stride=max(1, image.shape[0] // 96))
    return region if region.any() else logits > 0
