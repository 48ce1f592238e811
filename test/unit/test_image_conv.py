"""sensor_msgs/Image -> NumPy: zero-copy where possible, every malformed header rejected before
any allocation, 16-bit byte order honoured."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vla_align_ros.image_conv import ImageError, array_to_image_fields, image_to_array


def msg(**kw):
    base = dict(encoding="rgb8", height=2, width=3, step=9, is_bigendian=0, data=bytes(18))
    return SimpleNamespace(**{**base, **kw})


def test_rgb8_is_a_view_of_the_message_buffer():
    buf = bytearray(np.arange(18, dtype=np.uint8).tobytes())
    arr = image_to_array(msg(data=buf))
    assert arr.shape == (2, 3, 3) and arr[1, 2, 2] == 17
    buf[0] = 99
    assert arr[0, 0, 0] == 99  # no copy was made


def test_padded_rows_are_cropped_and_bgr_swapped():
    rows = np.zeros((2, 12), np.uint8)
    rows[:, :9] = np.arange(18, dtype=np.uint8).reshape(2, 9)
    arr = image_to_array(msg(step=12, data=rows.tobytes()))
    np.testing.assert_array_equal(arr.reshape(2, 9), rows[:, :9])
    bgr = image_to_array(msg(encoding="bgr8", data=np.arange(18, dtype=np.uint8).tobytes()))
    assert bgr[0, 0].tolist() == [2, 1, 0]
    rgba = image_to_array(msg(encoding="rgba8", step=12, data=np.arange(24, dtype=np.uint8).tobytes()))
    assert rgba.shape == (2, 3, 3) and rgba[0, 1].tolist() == [4, 5, 6]


@pytest.mark.parametrize("bigendian", [0, 1])
def test_mono16_byte_order(bigendian):
    values = np.array([[1, 256, 65535]], dtype=np.uint16)
    data = values.astype(">u2" if bigendian else "<u2").tobytes()
    arr = image_to_array(msg(encoding="mono16", height=1, width=3, step=6, data=data, is_bigendian=bigendian))
    assert arr.dtype == np.uint16 and arr[0, :, 0].tolist() == [1, 256, 65535]


@pytest.mark.parametrize("fields, reason", [
    (dict(encoding="yuv422"), "encoding"),
    (dict(width=0, step=0, data=b""), "size"),
    (dict(width=100_000, height=100_000, step=300_000, data=bytes(16)), "size"),
    (dict(step=8), "step"),
    (dict(data=bytes(17)), "data_length"),
])
def test_malformed_images_are_rejected_with_a_reason(fields, reason):
    with pytest.raises(ImageError) as e:
        image_to_array(msg(**fields))
    assert e.value.reason == reason


def test_round_trip_through_message_fields():
    img = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    f = array_to_image_fields(img, "rgb8")
    assert f["step"] == 21 and len(f["data"]) == 105
    np.testing.assert_array_equal(image_to_array(SimpleNamespace(**f)), img)
