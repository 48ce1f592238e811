"""Validation of instruction text before it reaches a tokenizer (pure, no ROS)."""

from __future__ import annotations

MAX_INSTRUCTION_CHARS = 512


class InstructionError(ValueError):
    pass


def validate_instruction(text: str | bytes, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """Decode (UTF-8, strict), strip and bound an instruction; raise ``InstructionError`` with the
    reason for empty, over-long or undecodable input. Control characters become spaces."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InstructionError(f"instruction is not valid UTF-8 ({e.reason} at byte {e.start})") from e
    if len(text) > 16 * max_chars:
        raise InstructionError(f"instruction of {len(text)} characters exceeds the limit of {max_chars}")
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not cleaned:
        raise InstructionError("instruction is empty")
    if len(cleaned) > max_chars:
        raise InstructionError(f"instruction of {len(cleaned)} characters exceeds the limit of {max_chars}")
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
    return [f"{verb} {p}" if verb and p.startswith("the ") else p for p in parts]
