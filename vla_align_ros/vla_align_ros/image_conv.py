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


def _int_field(msg: Any, name: str, default: int | None = None) -> int:
    """An integer header field; anything else (missing, str, float, None) is an ``ImageError``."""
    value = getattr(msg, name, default)
    if value is None:
        raise ImageError("field", f"image has no {name} field")
    if not isinstance(value, (int, np.integer)):  # bool is an int: fine for is_bigendian
        raise ImageError("field", f"image {name} must be an integer, got {type(value).__name__}")
    return int(value)


def _byte_buffer(data: Any, expected: int) -> np.ndarray:
    """``data`` as a flat uint8 array of exactly ``expected`` bytes, a view where the buffer
    allows. The length is checked before anything is copied, so the work is bounded by what the
    sender already holds in memory."""
    if isinstance(data, (list, tuple)):  # a plain sequence of byte values
        if len(data) != expected:
            raise ImageError("data_length", f"data has {len(data)} bytes, expected {expected}")
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError, OverflowError) as e:
            raise ImageError("data_type", f"data is not a sequence of byte values ({e})") from e
        if arr.ndim != 1 or arr.dtype.kind not in "uib" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise ImageError("data_type", "data must hold integers in 0..255")
        return arr.astype(np.uint8)
    if isinstance(data, (str, int, float)) or data is None:
        raise ImageError("data_type", f"data must be bytes or a byte buffer, got {type(data).__name__}")
    if isinstance(data, np.ndarray) and data.dtype.kind not in "uib":
        raise ImageError("data_type", f"data array must hold bytes (uint8), got dtype {data.dtype}")
    try:
        mv = memoryview(data)
    except (TypeError, ValueError) as e:  # no buffer protocol (an object array, a dict, ...)
        raise ImageError("data_type", f"data must be bytes or a byte buffer, got {type(data).__name__}") from e
    if mv.itemsize != 1:  # e.g. a uint16 array: its length in bytes would be misread
        raise ImageError("data_type", f"data must be a buffer of single bytes, got items of {mv.itemsize} bytes")
    if mv.nbytes != expected:
        raise ImageError("data_length", f"data has {mv.nbytes} bytes, expected {expected}")
    if not mv.c_contiguous:
        return np.frombuffer(mv.tobytes(), dtype=np.uint8)
    if mv.format != "B" or mv.ndim != 1:
        try:
            mv = mv.cast("B")
        except (TypeError, ValueError) as e:  # an exotic buffer format
            raise ImageError("data_type", f"data buffer of format {mv.format!r} cannot be read as bytes") from e
    return np.frombuffer(mv, dtype=np.uint8)


def image_to_array(msg: Any, rgb: bool = True) -> np.ndarray:
    """Image -> (H, W, C) array. The result is a view of ``msg.data`` where the layout allows
    (rgb8, mono8 without padding): no copy of the pixels. With ``rgb`` colour images come back
    as RGB (bgr8 channel order reversed, alpha dropped, still views). mono16 honours
    ``is_bigendian`` and comes back as native uint16.

    Anything malformed (unknown encoding, non-integer or out-of-range sizes, a step shorter than
    a row, a data length other than step x height, data that is not a byte buffer) raises
    ``ImageError`` before any pixel memory is allocated; no other exception escapes."""
    enc = getattr(msg, "encoding", None)
    if not isinstance(enc, str) or enc not in ENCODINGS:
        shown = repr(enc) if len(repr(enc)) <= 40 else repr(enc)[:37] + "..."
        raise ImageError("encoding", f"image encoding {shown} is not supported ({', '.join(ENCODINGS)})")
    ch, bpc = ENCODINGS[enc]
    h, w, step = _int_field(msg, "height"), _int_field(msg, "width"), _int_field(msg, "step")
    bigendian = _int_field(msg, "is_bigendian", 0) if bpc == 2 else 0
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ImageError("size", f"image size {w}x{h} is outside 1..{MAX_SIDE} px")
    if step < w * ch * bpc:
        raise ImageError("step", f"step {step} is smaller than width {w} x {ch * bpc} bytes per pixel")
    try:
        flat = _byte_buffer(getattr(msg, "data", None), step * h)
    except ImageError as e:
        if e.reason == "data_length":
            raise ImageError("data_length", f"{e}: step {step} x height {h}") from None
        raise
    rows = flat.reshape(h, step)[:, : w * ch * bpc]
    if bpc == 2:
        dt = np.dtype(">u2" if bigendian else "<u2")
        return np.ascontiguousarray(rows).view(dt).reshape(h, w, ch).astype(np.uint16)
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


COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024  # bigger is a corrupt message, not a camera frame


def compressed_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, as image_transport's compressed plugin writes
    it: ``format`` like "rgb8; jpeg compressed bgr8" or plain "jpeg") -> (H, W, 3) uint8 RGB.
    Anything that does not decode to a colour image of a sane size raises ``ImageError``."""
    import cv2

    fmt = getattr(msg, "format", None)
    if not isinstance(fmt, str) or not any(f in fmt.lower() for f in COMPRESSED_FORMATS):
        raise ImageError("encoding", f"compressed image format {fmt!r} is not supported (jpeg, png)")
    data = getattr(msg, "data", None)
    try:
        mv = memoryview(data if not isinstance(data, (list, tuple)) else bytes(data))
    except (TypeError, ValueError) as e:
        raise ImageError("data_type", f"compressed data must be bytes, got {type(data).__name__}") from e
    if mv.nbytes == 0 or mv.nbytes > MAX_COMPRESSED_BYTES:
        raise ImageError("data_length", f"compressed image of {mv.nbytes} bytes (1..{MAX_COMPRESSED_BYTES})")
    buf = np.frombuffer(mv.cast("B") if mv.format != "B" else mv, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # (H, W, 3) BGR, or None
    if arr is None:
        raise ImageError("decode", f"{fmt!r} data of {mv.nbytes} bytes does not decode")
    if not (0 < arr.shape[0] <= MAX_SIDE and 0 < arr.shape[1] <= MAX_SIDE):
        raise ImageError("size", f"image size {arr.shape[1]}x{arr.shape[0]} is outside 1..{MAX_SIDE} px")
    return np.ascontiguousarray(arr[..., ::-1])


def array_to_compressed_fields(arr: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> dict[str, Any]:
    """(H, W, 3) uint8 RGB -> the CompressedImage fields (``format`` in image_transport's style)."""
    import cv2

    ext = {"jpeg": ".jpg", "png": ".png"}[fmt]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, enc = cv2.imencode(ext, np.ascontiguousarray(arr[..., ::-1]), params)
    if not ok:
        raise ImageError("encode", f"cannot encode a {arr.shape} image as {fmt}")
    return {"format": f"rgb8; {fmt} compressed bgr8", "data": enc.tobytes()}
