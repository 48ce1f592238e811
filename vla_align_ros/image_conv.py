"""sensor_msgs/Image <-> NumPy, validated before anything is allocated (pure, no ROS import:
any object with the Image fields works, so bags and live messages share it)."""

from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> (channels, bytes per channel)
ENCODINGS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1), "mono16": (1, 2),
}
MAX_SIDE = 16384  # px; bigger is a corrupt header, not a camera


class ImageError(ValueError):
    """``reason`` is a short key for counting drops."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_to_array(msg: Any, rgb: bool = True) -> np.ndarray:
    """Image -> (H, W, C) array. The result is a view of ``msg.data`` where the layout allows
    (rgb8, mono8 without padding): no copy of the pixels. With ``rgb`` colour images come back
    as RGB (bgr8 channel order reversed, alpha dropped, still views). mono16 honours
    ``is_bigendian`` and comes back as native uint16."""
    enc = str(msg.encoding)
    if enc not in ENCODINGS:
        raise ImageError("encoding", f"image encoding {enc!r} is not supported ({', '.join(ENCODINGS)})")
    ch, bpc = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ImageError("size", f"image size {w}x{h} is outside 1..{MAX_SIDE} px")
    if step < w * ch * bpc:
        raise ImageError("step", f"step {step} is smaller than width {w} x {ch * bpc} bytes per pixel")
    data = msg.data
    buf = data if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)) else bytes(data)
    n = buf.size if isinstance(buf, np.ndarray) else len(buf)
    if n != step * h:
        raise ImageError("data_length", f"data has {n} bytes, expected step {step} x height {h} = {step * h}")
    flat = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.view(np.uint8).reshape(-1)
    rows = flat.reshape(h, step)[:, : w * ch * bpc]
    if bpc == 2:
        dt = np.dtype(">u2" if int(getattr(msg, "is_bigendian", 0)) else "<u2")
        arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, ch).astype(np.uint16)
        return arr
    arr = rows.reshape(h, w, ch)
    if rgb and enc in ("bgr8", "bgra8"):
        arr = arr[..., 2::-1]
    elif rgb and enc == "rgba8":
        arr = arr[..., :3]
    return arr


def array_to_image_fields(arr: np.ndarray, encoding: str) -> dict[str, Any]:
    """(H, W[, C]) uint8 -> the Image fields (``tobytes()`` once: assigning an ndarray to a
    message's data field is far slower)."""
    a = np.ascontiguousarray(arr)
    ch = 1 if a.ndim == 2 else a.shape[2]
    return {"height": a.shape[0], "width": a.shape[1], "encoding": encoding, "is_bigendian": 0,
            "step": a.shape[1] * ch * a.itemsize, "data": a.tobytes()}
