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
