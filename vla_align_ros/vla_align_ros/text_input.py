"""Validation of instruction text before it reaches a tokenizer (pure, no ROS)."""

from __future__ import annotations

import math
import re

MAX_INSTRUCTION_CHARS = 512
_RAW_FACTOR = 16  # raw characters allowed per kept character (whitespace and control runs collapse)
_UTF8_MAX_BYTES = 4


class InstructionError(ValueError):
    """``reason`` is a short key for counting rejections: empty, too_long, not_utf8, not_text,
    rate_limited."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def validate_instruction(text: str | bytes, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """Decode (UTF-8, strict), strip and bound an instruction; raise ``InstructionError`` with the
    reason for empty, over-long or undecodable input. Control characters become spaces.

    The work is bounded by ``max_chars``, not by the input: anything longer than
    ``16 * max_chars`` characters (or ``4 * 16 * max_chars`` bytes, before decoding) is refused
    from its length alone."""
    limit = _RAW_FACTOR * max_chars
    if isinstance(text, (bytes, bytearray, memoryview)):
        n = text.nbytes if isinstance(text, memoryview) else len(text)
        if n > limit * _UTF8_MAX_BYTES:  # refused before decoding
            raise InstructionError(f"instruction of {n} bytes exceeds the limit of {max_chars} characters",
                                   "too_long")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InstructionError(f"instruction is not valid UTF-8 ({e.reason} at byte {e.start})", "not_utf8") from e
    if not isinstance(text, str):
        raise InstructionError(f"instruction must be text, got {type(text).__name__}", "not_text")
    if len(text) > limit:
        raise InstructionError(f"instruction of {len(text)} characters exceeds the limit of {max_chars}", "too_long")
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not cleaned:
        raise InstructionError("instruction is empty", "empty")
    if len(cleaned) > max_chars:
        raise InstructionError(f"instruction of {len(cleaned)} characters exceeds the limit of {max_chars}",
                               "too_long")
    return cleaned


class InstructionGate:
    """Validation plus a rate limit on *changes* of the instruction (pure; the caller passes
    the time). Re-sending the current instruction is cheap and always accepted; a different
    one within ``min_interval_s`` of the last accepted change is refused as rate limited.
    ``counts`` holds the rejections by reason."""

    def __init__(self, min_interval_s: float = 0.2, max_chars: int = MAX_INSTRUCTION_CHARS) -> None:
        if not math.isfinite(min_interval_s) or min_interval_s < 0:
            raise ValueError(f"min_interval_s={min_interval_s}: must be a finite number >= 0")
        if max_chars <= 0:
            raise ValueError(f"max_chars={max_chars}: must be > 0")
        self.min_interval_s = float(min_interval_s)
        self.max_chars = int(max_chars)
        self.counts: dict[str, int] = {"empty": 0, "too_long": 0, "not_utf8": 0, "not_text": 0, "rate_limited": 0}
        self.current: str | None = None
        self._raw: str | bytes | None = None  # the input that produced ``current``
        self._changed_at: float | None = None

    def accept(self, text: str | bytes, now: float) -> str:
        """The cleaned instruction, or ``InstructionError`` (counted) with the reason."""
        if not math.isfinite(now):
            raise ValueError(f"now={now}: must be finite")
        if self._raw is not None and type(text) is type(self._raw) and text == self._raw:
            return self.current  # type: ignore[return-value]
        try:
            cleaned = validate_instruction(text, self.max_chars)
        except InstructionError as e:
            self.counts[e.reason] = self.counts.get(e.reason, 0) + 1
            raise
        if cleaned == self.current:  # the same instruction written differently: not a change
            self._raw = text
            return cleaned
        if self._changed_at is not None and 0 <= now - self._changed_at < self.min_interval_s:
            self.counts["rate_limited"] += 1
            raise InstructionError(f"rate limited: instruction changed {now - self._changed_at:.3f} s after the "
                                   f"last change (minimum {self.min_interval_s} s)", "rate_limited")
        # (a clock that went backwards, e.g. a restarted simulation, starts a new interval)
        self.current, self._raw, self._changed_at = cleaned, text, now
        return cleaned


_STEP_SEPARATORS = (", and then ", " and then ", ", then ", " then ", "; ")


def split_steps(instruction: str) -> list[str]:
    """The steps of a multi-step instruction, in order ("pick up the red cube, then put it on
    the blue plate" -> two steps); a single-step instruction is one step. Pure string rules
    (the temporal head needs the step phrases online, where no bag carries them): a later step
    without a verb borrows the first step's ("put A on B and then C on D" -> "put C on D"), and
    "after doing X, do Y" becomes X then Y."""
    text = instruction.strip()
    parts = [text]
    low = text.lower()
    if low.startswith("after ") and ", " in text:
        first, rest = text[len("after "):].split(", ", 1)
        words = first.split(" ")
        if words and words[0].endswith("ing"):  # "picking up the cube" -> "pick up the cube"
            stem = words[0][: -len("ing")]
            words[0] = stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else stem
        parts = [" ".join(words), rest]
    for sep in _STEP_SEPARATORS:
        parts = [p.strip(" ,") for part in parts for p in part.split(sep)]
    parts = [p for p in parts if p]
    if not parts:
        return [text]
    verb = parts[0].split(" the ", 1)[0] if " the " in parts[0] else ""
    return resolve_references([f"{verb} {p}" if verb and p.startswith("the ") else p for p in parts])


# The thing a step acts on: "the" and the words after it, up to a preposition, a particle or
# direction ("pick the cube up", "push the cube left"), a comma or the end.
_OBJECT = re.compile(r"\bthe (?:\w+ )*?\w+(?= (?:on|onto|to|into|in|from|at|and|then|next|near|up|down|left|right"
                     r"|back|away|off|over)\b|,|$)", re.IGNORECASE)
_IT = re.compile(r"\bit\b", re.IGNORECASE)


def object_phrase(step: str) -> str | None:
    """The thing a step acts on ("slide the red block right" -> "the red block"), or None."""
    m = _OBJECT.search(step)
    return None if m is None else m.group(0)


def target_phrase(step: str) -> str | None:
    """The thing a step puts something on: the next such phrase after its object ("put the red
    cube on the blue cube" -> "the blue cube"), or None."""
    first = _OBJECT.search(step)
    if first is None:
        return None
    m = _OBJECT.search(step, first.end())
    return None if m is None else m.group(0)


def resolve_references(steps: list[str]) -> list[str]:
    """Each step phrase standing on its own: "it" in a later step becomes the thing the step
    before acts on (["pick up the red cube", "put it on the blue plate"] -> [..., "put the red
    cube on the blue plate"]), so the heads that read one step (``heads.ground_steps``) know which
    object it moves. Steps without "it", or after a step that names nothing, are left as they are."""
    out = list(steps)
    for i in range(1, len(out)):
        thing = object_phrase(out[i - 1])
        if thing is not None:
            out[i] = _IT.sub(thing, out[i], count=1)
    return out
