"""Robustness battery, pure-logic part (no ROS): items 9-14 and 18-19.

Every test names its battery item. Fuzz tests use a seeded NumPy RNG and assert the number of
cases they ran."""

from __future__ import annotations

import array
import json
import pickle
import shutil
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_align_ros.control import StampFilter
from vla_align_ros.image_conv import ENCODINGS, MAX_SIDE, ImageError, image_to_array
from vla_align_ros.text_input import MAX_INSTRUCTION_CHARS, InstructionError, InstructionGate, validate_instruction
from conftest import CONFIG_DIR

FUZZ_CASES = 10_000


def image(**kw: Any) -> SimpleNamespace:
    base = dict(encoding="rgb8", height=2, width=3, step=9, is_bigendian=0, data=bytes(18))
    return SimpleNamespace(**{**base, **kw})


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak Python heap allocation while ``fn`` runs (its exception, if any, is swallowed)."""
    tracemalloc.start()
    try:
        fn()
    except (ImageError, InstructionError):
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# ---------------------------------------------------------------- items 9-12: image_to_array


@pytest.mark.parametrize("fields, reason", [
    (dict(width=100_000, height=100_000, step=300_000, data=bytes(16)), "size"),
    (dict(width=MAX_SIDE, height=MAX_SIDE, step=3 * MAX_SIDE, data=bytes(16)), "data_length"),
    (dict(width=MAX_SIDE, height=MAX_SIDE, step=3 * MAX_SIDE, data=[0] * 16), "data_length"),
    (dict(height=1, step=10**18, data=bytes(16)), "data_length"),
    (dict(data=10**12), "data_type"),  # bytes(10**12) would have tried to allocate a terabyte
    (dict(data=2**31), "data_type"),
])
def test_item9_12_huge_headers_rejected_before_any_allocation(fields, reason):
    """Item 9-12: a header that promises a huge image over a tiny buffer is refused in
    microseconds with almost no memory (tracemalloc peak), before any pixel allocation."""
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as e:
        image_to_array(image(**fields))
    assert time.perf_counter() - t0 < 0.05
    assert e.value.reason == reason
    assert peak_bytes(lambda: image_to_array(image(**fields))) < 64 * 1024


@pytest.mark.parametrize("fields, reason, words", [
    (dict(height="2"), "field", "height must be an integer, got str"),
    (dict(width=3.0), "field", "width must be an integer, got float"),
    (dict(step=None), "field", "no step field"),
    (dict(encoding=b"rgb8"), "encoding", "b'rgb8'"),
    (dict(encoding=None), "encoding", "None"),
    (dict(encoding="x" * 10_000), "encoding", "..."),  # the message stays short
    (dict(data=None), "data_type", "NoneType"),
    (dict(data="x" * 18), "data_type", "got str"),
    (dict(data=[0] * 17 + [256]), "data_type", "0..255"),
    (dict(data=[0.5] * 18), "data_type", "0..255"),
    (dict(data=[[0] * 9, [0] * 8]), "data_length", "2 bytes"),
    (dict(data=np.zeros(18, np.float32)), "data_type", "float32"),
    (dict(data=np.zeros(9, np.uint16)), "data_type", "2 bytes"),
    (dict(data=array.array("H", [0] * 9)), "data_type", "2 bytes"),
    (dict(data={"a": 1}), "data_type", "dict"),
    (dict(height=-2, step=9, data=bytes(18)), "size", "3x-2"),
    (dict(step=-9), "step", "step -9"),
])
def test_item9_12_malformed_fields_raise_image_error_with_reason(fields, reason, words):
    """Item 9-12: wrong types and values in any field give ImageError (never TypeError,
    OverflowError or a NumPy ValueError), with a reason key and a message naming the field."""
    with pytest.raises(ImageError) as e:
        image_to_array(image(**fields))
    assert type(e.value) is ImageError and e.value.reason == reason
    assert words in str(e.value) and len(str(e.value)) < 200


def test_item9_12_missing_fields_are_image_errors():
    """Item 9-12: an object without the Image fields is refused, not an AttributeError."""
    with pytest.raises(ImageError, match="encoding None"):
        image_to_array(object())
    with pytest.raises(ImageError, match="no height field"):
        image_to_array(SimpleNamespace(encoding="mono8", width=1, step=1, data=b"\0"))


def test_item9_12_rclpy_array_and_list_data_are_read():
    """Item 9-12: rclpy's array('B') data is read without a copy; a list of byte values works."""
    buf = array.array("B", range(18))
    arr = image_to_array(image(data=buf))
    assert arr[1, 2].tolist() == [15, 16, 17]
    buf[0] = 200
    assert arr[0, 0, 0] == 200  # a view of the message's array
    assert image_to_array(image(data=list(range(18))))[1, 0].tolist() == [9, 10, 11]
    two_d = np.arange(18, dtype=np.uint8).reshape(2, 9)  # any C-contiguous shape of bytes
    assert image_to_array(image(data=two_d))[0, 1].tolist() == [3, 4, 5]
    strided = np.arange(36, dtype=np.uint8)[::2]  # non-contiguous: copied, values right
    assert image_to_array(image(data=strided))[0, 1].tolist() == [6, 8, 10]


@pytest.mark.parametrize("bigendian", [0, 1])
def test_item11_12_padded_mono16_is_cropped_and_byte_order_honoured(bigendian):
    """Item 11-12: 16-bit rows with 3 bytes of padding: padding dropped, byte order honoured."""
    values = np.array([[1, 258, 65535], [4096, 0, 515]], dtype=np.uint16)
    raw = values.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(2, 6)
    padded = np.concatenate([raw, np.full((2, 3), 0xAB, np.uint8)], axis=1)
    arr = image_to_array(image(encoding="mono16", height=2, width=3, step=9, is_bigendian=bigendian,
                               data=padded.tobytes()))
    assert arr.shape == (2, 3, 1) and arr.dtype == np.uint16
    assert arr[..., 0].tolist() == values.tolist()


def _expected_pixels(enc: str, h: int, w: int, step: int, bigendian: int, data: bytes) -> np.ndarray:
    """What image_to_array must return, computed independently with integer arithmetic."""
    ch, bpc = ENCODINGS[enc]
    raw = np.array(list(data), dtype=np.int64).reshape(h, step)[:, : w * ch * bpc]
    if bpc == 2:
        hi, lo = (raw[:, 0::2], raw[:, 1::2]) if bigendian else (raw[:, 1::2], raw[:, 0::2])
        return (hi * 256 + lo).reshape(h, w, 1)
    px = raw.reshape(h, w, ch)
    order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0], "mono8": [0]}[enc]
    return px[..., order]


def _random_image(rng: np.random.Generator) -> SimpleNamespace:
    """A random Image-like object: a valid image with 0-3 fields replaced by wrong types,
    negative, huge or inconsistent values (some of which happen to stay valid)."""
    enc = list(ENCODINGS)[rng.integers(len(ENCODINGS))]
    ch, bpc = ENCODINGS[enc]
    h, w = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    step = w * ch * bpc + int(rng.integers(0, 4))
    pixels = rng.integers(0, 256, step * h, dtype=np.uint8).tobytes()
    f: dict[str, Any] = dict(encoding=enc, height=h, width=w, step=step, is_bigendian=int(rng.integers(0, 2)),
                             data=[pixels, bytearray(pixels), np.frombuffer(pixels, np.uint8), list(pixels),
                                   array.array("B", pixels)][rng.integers(5)])
    junk: list[Any] = [None, "2", "", 2.5, 3.0, [1], -1, -(2**40), 0, 2**31, 2**64, 10**30, 100_000,
                       MAX_SIDE + 1, {"k": 1}, b"rgb8", object(), np.int32(2), np.uint64(3), True]
    n = step * h
    bad_data: list[Callable[[], Any]] = [
        lambda: None, lambda: "x" * n, lambda: 10**12, lambda: -1, lambda: 1.5, lambda: bytes(n - 1),
        lambda: bytes(n + 1), lambda: [300] * n, lambda: [-1] * n, lambda: ["a"] * n, lambda: [None] * n,
        lambda: [2**70] * n, lambda: [[1, 2], [3]], lambda: np.zeros(n, np.float64), lambda: np.zeros(n, object),
        lambda: np.zeros(n, np.uint16), lambda: np.zeros((n, 2), np.uint8)[:, 0],
        lambda: memoryview(bytes(2 * n))[::2], lambda: array.array("h", [0] * n),
    ]
    for _ in range(int(rng.integers(0, 4))):
        key = ["encoding", "height", "width", "step", "data", "is_bigendian"][rng.integers(6)]
        if key == "encoding":
            f[key] = junk[rng.integers(len(junk))] if rng.random() < 0.5 else \
                ["yuv422", "RGB8", "rgb8 ", "16UC1", *ENCODINGS][rng.integers(4 + len(ENCODINGS))]
        elif key == "data":
            f[key] = bad_data[rng.integers(len(bad_data))]()
        elif key == "is_bigendian":
            f[key] = junk[rng.integers(len(junk))]
        elif rng.random() < 0.6 or not isinstance(f[key], int):
            f[key] = junk[rng.integers(len(junk))]
        else:
            f[key] += int(rng.integers(-3, 4))
            rows = f["height"]
            if key == "step" and 0 < f[key] <= 64 and type(rows) is int and 0 < rows <= 8 and rng.random() < 0.5:
                f["data"] = bytes(f[key] * rows)  # consistent with the new step
    return SimpleNamespace(**f)


def _well_formed(msg: SimpleNamespace) -> bool:
    """The specification, written out independently: which objects must be accepted."""
    def integer(v: Any) -> bool:
        return isinstance(v, (int, np.integer))

    if type(msg.encoding) is not str or msg.encoding not in ENCODINGS:
        return False
    ch, bpc = ENCODINGS[msg.encoding]
    if not (integer(msg.height) and integer(msg.width) and integer(msg.step)):
        return False
    if bpc == 2 and not integer(msg.is_bigendian):
        return False
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and step >= w * ch * bpc):
        return False
    d = msg.data
    if isinstance(d, list):
        return len(d) == step * h and all(type(v) is int and 0 <= v <= 255 for v in d)
    if isinstance(d, np.ndarray):
        return d.dtype.kind in "uib" and d.itemsize == 1 and d.size == step * h
    if isinstance(d, (bytes, bytearray, memoryview, array.array)):
        return memoryview(d).itemsize == 1 and memoryview(d).nbytes == step * h
    return False


def test_item9_12_fuzz_only_arrays_or_image_errors():
    """Item 9-12 fuzz: 10,000 random Image-like objects. Each call returns the exact expected
    array (checked against an independent computation) or raises ImageError; nothing else
    escapes, and exactly the well-formed objects are accepted."""
    rng = np.random.default_rng(20240912)
    ok = rejected = 0
    reasons: dict[str, int] = {}
    t0 = time.perf_counter()
    for _ in range(FUZZ_CASES):
        msg = _random_image(rng)
        valid = _well_formed(msg)
        try:
            arr = image_to_array(msg)
        except ImageError as e:
            assert not valid, f"a well-formed image was refused ({e}): {vars(msg)!r:.300}"
            rejected += 1
            reasons[e.reason] = reasons.get(e.reason, 0) + 1
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(e).__name__} escaped for {vars(msg)!r:.300}: {e}")
        assert valid, f"a malformed image was accepted: {vars(msg)!r:.300}"
        ok += 1
        d = msg.data
        data = bytes(d) if isinstance(d, list) else d.astype(np.uint8).tobytes() if isinstance(d, np.ndarray) \
            else memoryview(d).tobytes()
        expected = _expected_pixels(msg.encoding, int(msg.height), int(msg.width), int(msg.step),
                                    int(msg.is_bigendian) if msg.encoding == "mono16" else 0, data)
        assert arr.shape == expected.shape
        assert arr.dtype == (np.uint16 if msg.encoding == "mono16" else np.uint8)
        np.testing.assert_array_equal(arr, expected)
    elapsed = time.perf_counter() - t0
    assert ok + rejected == FUZZ_CASES
    assert ok > 2000 and rejected > 2000, (ok, rejected)
    assert set(reasons) == {"encoding", "field", "size", "step", "data_length", "data_type"}, reasons
    assert elapsed < 20, elapsed


# ---------------------------------------------------------------- item 13: instructions


class Tripwire(str):
    """A string that fails the test if anything iterates over its characters."""

    def __iter__(self):
        raise AssertionError("the instruction was scanned")


def test_item13_tripwire_detects_scanning():
    """Item 13: the tripwire fires on a short instruction (so the next test can fail)."""
    with pytest.raises(AssertionError, match="scanned"):
        validate_instruction(Tripwire("pick up the cube"))


@pytest.mark.parametrize("size", [1_000_000, 100_000_000])
def test_item13_huge_instructions_rejected_without_scanning(size):
    """Item 13: 1 MB and 100 MB instructions (str and bytes) are refused from their length:
    no character is visited, nothing is decoded or copied, and it takes well under 10 ms."""
    text = Tripwire("y" * size)
    t0 = time.perf_counter()
    with pytest.raises(InstructionError) as e:
        validate_instruction(text)
    assert time.perf_counter() - t0 < 0.01
    assert e.value.reason == "too_long" and f"{size} characters" in str(e.value)
    del text
    raw = b"\xff" * size  # also invalid UTF-8: refused as too long before any decoding
    assert peak_bytes(lambda: validate_instruction(raw)) < 64 * 1024
    with pytest.raises(InstructionError, match=f"{size} bytes exceeds") as e:
        validate_instruction(raw)
    assert e.value.reason == "too_long"


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), (b"", "empty"), (" \t\n\r\x00\x1b\u2028 ", "empty"), (b"\xc3\x28 go", "not_utf8"),
    (b"\xed\xa0\x80", "not_utf8"),  # an encoded surrogate is not UTF-8
    (bytearray(b"\xff"), "not_utf8"), (None, "not_text"), (42, "not_text"), (["go"], "not_text"),
    ("a" * (MAX_INSTRUCTION_CHARS + 1), "too_long"),
])
def test_item13_bad_instructions_give_reasons(text, reason):
    """Item 13: empty, control-only, non-UTF-8 and non-text instructions: InstructionError with a reason."""
    with pytest.raises(InstructionError) as e:
        validate_instruction(text)
    assert e.value.reason == reason


def test_item13_gate_identical_instruction_is_cached_not_a_change():
    """Item 13: re-sending the current instruction returns the cached text and never counts as a
    change (so it cannot be rate limited); a different one within 0.2 s is refused."""
    gate = InstructionGate(min_interval_s=0.2)
    first = gate.accept("  pick up the red cube\n", now=0.0)
    assert first == "pick up the red cube"
    for i in range(100):  # 1 kHz re-sends of the same text
        assert gate.accept("  pick up the red cube\n", now=0.001 * i) is first
    assert gate.accept(b"pick up   the red cube", now=0.05) == first  # same after cleaning: not a change
    assert gate.counts["rate_limited"] == 0
    with pytest.raises(InstructionError, match="rate limited") as e:
        gate.accept("push the blue cube", now=0.15)
    assert e.value.reason == "rate_limited" and gate.counts["rate_limited"] == 1
    assert gate.accept("push the blue cube", now=0.2) == "push the blue cube"  # 0.2 s after the change
    assert gate.current == "push the blue cube"


def test_item13_gate_counts_rejections_by_reason():
    """Item 13: counts per reason; a rejected instruction leaves the current one in force."""
    gate = InstructionGate(min_interval_s=0.0, max_chars=10)
    gate.accept("go left", 0.0)
    for bad in ("", "   ", b"\xff", "x" * 11, "y" * 10**6):
        with pytest.raises(InstructionError):
            gate.accept(bad, 1.0)
    assert gate.counts == {"empty": 2, "not_utf8": 1, "too_long": 2, "not_text": 0, "rate_limited": 0}
    assert gate.current == "go left"


def test_item13_gate_50hz_changes_are_rate_limited():
    """Item 13: an instruction changing at 50 Hz for 2 s of simulated time gets at most
    2 s / min_interval + 1 changes through, spaced at least min_interval apart."""
    gate = InstructionGate(min_interval_s=0.2)
    accepted = []
    for i in range(100):
        now = i / 50
        try:
            gate.accept(f"move to slot {i}", now)
            accepted.append(now)
        except InstructionError as e:
            assert e.reason == "rate_limited"
    assert 2.0 / 0.2 - 1 <= len(accepted) <= 2.0 / 0.2 + 1
    assert min(np.diff(accepted)) >= 0.2 - 1e-9
    assert gate.counts["rate_limited"] == 100 - len(accepted)


def test_item13_gate_clock_jumping_back_starts_a_new_interval():
    """Item 13: a clock that jumps backwards (restarted simulation) does not lock changes out."""
    gate = InstructionGate(min_interval_s=0.2)
    gate.accept("a", 100.0)
    assert gate.accept("b", 1.0) == "b"
    with pytest.raises(InstructionError, match="rate limited"):
        gate.accept("c", 1.1)
    with pytest.raises(ValueError):
        gate.accept("d", float("nan"))


def _random_instruction(rng: np.random.Generator) -> Any:
    kind = int(rng.integers(0, 6))
    n = int(rng.integers(0, 80))
    if kind == 0:  # random bytes (mostly invalid UTF-8)
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    if kind == 1:  # any code point, surrogates and control characters included
        return "".join(map(chr, rng.integers(0, 0x110000, n)))
    if kind == 2:  # ASCII with control characters
        return "".join(map(chr, rng.integers(0, 128, n)))
    if kind == 3:  # valid UTF-8 bytes of random text, maybe cut mid-character
        raw = "".join(map(chr, rng.integers(0x20, 0x3000, n))).encode()
        return raw[: int(rng.integers(0, len(raw) + 1))]
    if kind == 4:  # words and whitespace
        return " ".join(["pick", "up", "the", "\t", "red", "\n", "cube", "\x00"][j] for j in rng.integers(0, 8, n))
    return [None, 3, 2.5, ["x"], b"", "", " " * 9000, "z" * (MAX_INSTRUCTION_CHARS * 16 + 1)][rng.integers(8)]


def test_item13_fuzz_only_instruction_errors_escape():
    """Item 13 fuzz: 10,000 random instructions (random bytes, random code points, control
    characters, wrong types, and 1 MB ones) through validate_instruction and an InstructionGate:
    only InstructionError escapes, and every accepted text is clean and bounded."""
    rng = np.random.default_rng(13)
    gate = InstructionGate(min_interval_s=0.05)
    cases = accepted = 0
    t0 = time.perf_counter()
    for i in range(FUZZ_CASES):
        text = _random_instruction(rng) if i % 2000 else "\u00e9" * 1_000_000  # five 1 MB ones
        cases += 1
        for call in (lambda: validate_instruction(text), lambda: gate.accept(text, now=i * 0.01)):
            try:
                out = call()
            except InstructionError:
                continue
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{type(e).__name__} escaped for {text!r:.200}: {e}")
            accepted += 1
            assert isinstance(out, str) and 0 < len(out) <= MAX_INSTRUCTION_CHARS
            assert out.isprintable() and out == " ".join(out.split())
    elapsed = time.perf_counter() - t0
    assert cases == FUZZ_CASES
    assert accepted > 2000 and sum(gate.counts.values()) > 2000
    assert all(gate.counts[k] > 0 for k in ("empty", "too_long", "not_utf8", "not_text", "rate_limited"))
    assert elapsed < 20, elapsed


# ---------------------------------------------------------------- item 14: stamp freshness

MS = 1_000_000


def test_item14_stamp_filter_reasons_with_numbers():
    """Item 14: 0.5 s age window, 50 ms future tolerance, strictly increasing stamps."""
    f = StampFilter(max_age_s=0.5, max_future_s=0.05)
    now = 10_000 * MS
    assert f.check(now - 500 * MS, now) is None  # exactly 0.5 s old: accepted
    assert f.check(now - 400 * MS, now) is None
    assert f.check(now - 400 * MS, now) == "out_of_order"  # equal to the last: a duplicate
    assert f.check(now - 450 * MS, now) == "out_of_order"
    assert f.check(now - 501 * MS, now) == "too_old"
    assert f.check(now + 51 * MS, now) == "future"
    assert f.check(now + 50 * MS, now) is None  # exactly at the tolerance: accepted
    assert f.last_ns == now + 50 * MS
    assert f.check(now + 10 * MS, now + 20 * MS) == "out_of_order"
    assert f.counts == {"future": 1, "too_old": 1, "out_of_order": 3}


def test_item14_reset_forgets_the_last_stamp_not_the_counts():
    """Item 14: after reset() (instruction change, reactivation) an older but fresh stamp passes."""
    f = StampFilter(max_age_s=0.5, max_future_s=0.05)
    assert f.check(1_000 * MS, 1_000 * MS) is None
    assert f.check(900 * MS, 1_000 * MS) == "out_of_order"
    f.reset()
    assert f.last_ns is None
    assert f.check(900 * MS, 1_000 * MS) is None
    assert f.check(400 * MS, 1_000 * MS) == "too_old"  # reset does not widen the age window
    assert f.counts == {"future": 0, "too_old": 1, "out_of_order": 1}


def test_item14_invalid_windows_are_refused():
    """Item 14: negative or non-finite windows are configuration errors."""
    for kw in (dict(max_age_s=-0.1), dict(max_future_s=float("nan")), dict(max_age_s=float("inf"))):
        with pytest.raises(ValueError):
            StampFilter(**kw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-2_000 * MS, 2_000 * MS), st.integers(0, 50 * MS), st.booleans()),
                max_size=60))
def test_item14_property_accepted_stamps_increase_and_stay_in_window(events):
    """Item 14 property: whatever arrives, accepted stamps are strictly increasing (between
    resets) and within [now - max_age, now + max_future]; every drop is counted once."""
    f = StampFilter(max_age_s=0.5, max_future_s=0.05)
    now = 10_000 * MS
    last = None
    drops = 0
    for offset, advance, reset in events:
        now += advance
        if reset:
            f.reset()
            last = None
        stamp = now + offset
        reason = f.check(stamp, now)
        if reason is None:
            assert now - 500 * MS <= stamp <= now + 50 * MS
            assert last is None or stamp > last
            last = stamp
        else:
            drops += 1
            assert reason in ("future", "too_old", "out_of_order")
    assert sum(f.counts.values()) == drops


# ---------------------------------------------------------------- items 18-19: checkpoints


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    from vla_align_ros.config import ModelConfig
    from vla_align_ros.model import TrimodalModel, save_checkpoint

    cfg = ModelConfig.from_yaml(CONFIG_DIR / "model" / "tiny.yaml")
    torch.manual_seed(0)
    return save_checkpoint(TrimodalModel(cfg).eval(), tmp_path_factory.mktemp("tiny") / "ck")


@pytest.fixture()
def ckpt(saved_tiny, tmp_path) -> Path:
    return Path(shutil.copytree(saved_tiny, tmp_path / "ck"))


class _RunsCode:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rehash(ckpt: Path, name: str) -> None:
    from vla_align_ros.model.checkpoint import sha256_file

    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(ckpt / name)
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "tokenizer/extra.pkl"])
def test_item18_pickle_beside_safetensors_is_refused_unopened(ckpt, tmp_path, name):
    """Item 18: a complete safetensors checkpoint with a torch.save pickle dropped in (top level
    or in the tokenizer folder) is refused, and the pickle's payload never runs."""
    from vla_align_ros.model import CheckpointError, load_checkpoint

    marker = tmp_path / "pickle_ran"
    torch.save({"w": _RunsCode(marker)}, ckpt / name)
    with pytest.raises(CheckpointError, match=f"refusing a pickle checkpoint.*{name}"):
        load_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_item18_pickle_disguised_as_safetensors_is_refused_unopened(ckpt, tmp_path, writer):
    """Item 18: a pickle written under the safetensors name, manifest hash updated to match,
    is recognised from its first bytes and refused; the payload never runs."""
    from vla_align_ros.model import CheckpointError, load_checkpoint

    marker = tmp_path / "pickle_ran"
    weights = ckpt / "model.safetensors"
    if writer == "pickle":
        weights.write_bytes(pickle.dumps({"w": _RunsCode(marker)}, protocol=4))
    else:
        torch.save({"w": _RunsCode(marker)}, weights)
    _rehash(ckpt, "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: refusing a pickle checkpoint"):
        load_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [4, 8, 100, -1])
def test_item19_truncated_safetensors_with_matching_hash(ckpt, keep):
    """Item 19: weights cut at the header length, inside the header, or one byte short (with a
    manifest that matches, as if saved that way) fail as unreadable safetensors."""
    from vla_align_ros.model import CheckpointError, load_checkpoint

    w = ckpt / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:keep])
    _rehash(ckpt, "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable safetensors"):
        load_checkpoint(ckpt)


def test_item19_manifest_problems_are_named(ckpt):
    """Item 19: each manifest problem gives a CheckpointError naming it."""
    from vla_align_ros.model import CheckpointError, load_checkpoint, verify_checkpoint

    manifest_path = ckpt / "manifest.json"
    good = json.loads(manifest_path.read_text())
    assert set(verify_checkpoint(ckpt)) == set(good["files"])

    def expect(manifest: Any, pattern: str) -> None:
        manifest_path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
        with pytest.raises(CheckpointError, match=pattern):
            load_checkpoint(ckpt)

    expect("{not json", "unreadable manifest")
    expect({"files": ["model.safetensors"]}, "must map file names")
    expect({"files": {k: v for k, v in good["files"].items() if k != "model.safetensors"}},
           "does not list model.safetensors")
    expect({"files": {**good["files"], "../../etc/hostname": "0" * 64}}, "points outside the checkpoint folder")
    expect({"files": {**good["files"], "gone.json": "0" * 64}}, "gone.json is listed in the manifest but missing")
    expect({"files": {**good["files"], "config.json": "f" * 64}}, "sha256 mismatch for config.json")
    manifest_path.write_text(json.dumps(good))
    (ckpt / "config.json").write_text("{broken")
    _rehash(ckpt, "config.json")
    with pytest.raises(CheckpointError, match="config.json: invalid model config"):
        load_checkpoint(ckpt)


def test_item19_tampered_config_is_a_hash_mismatch(ckpt):
    """Item 19: editing config.json after saving (a wider model) is caught by its hash."""
    from vla_align_ros.model import CheckpointError, load_checkpoint

    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model"]["projection"]["embed_dim"] = 256
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="sha256 mismatch for config.json"):
        load_checkpoint(ckpt)
