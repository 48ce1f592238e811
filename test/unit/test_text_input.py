"""Instruction text before it reaches a tokenizer: bounded, decoded strictly, split into steps."""

from __future__ import annotations

import pytest

from vla_align_ros.text_input import (MAX_INSTRUCTION_CHARS, InstructionError, resolve_references, split_steps,
                                      validate_instruction)


def test_instructions_are_cleaned_and_bounded():
    assert validate_instruction("  pick up\tthe\x00red cube \n") == "pick up the red cube"
    assert validate_instruction("grab the cube".encode()) == "grab the cube"
    with pytest.raises(InstructionError, match="empty"):
        validate_instruction(" \n\t ")
    with pytest.raises(InstructionError, match="UTF-8"):
        validate_instruction(b"pick \xff up")
    with pytest.raises(InstructionError, match="exceeds"):
        validate_instruction("x" * (MAX_INSTRUCTION_CHARS + 1))
    with pytest.raises(InstructionError, match="exceeds"):  # 1 MB is refused before any cleaning work
        validate_instruction("y" * 1_000_000)


@pytest.mark.parametrize("text, steps", [
    ("push the red cube left", ["push the red cube left"]),
    ("pick up the red cube, then put it on the blue plate", ["pick up the red cube", "put the red cube on the blue plate"]),
    ("grab the red block and then set it on the blue dish", ["grab the red block", "set the red block on the blue dish"]),
    ("put the red block on the yellow plate and then the blue cube on the green dish",
     ["put the red block on the yellow plate", "put the blue cube on the green dish"]),
    ("after picking up the green cube, place it on the red plate", ["pick up the green cube", "place the green cube on the red plate"]),
])
def test_multi_step_instructions_split_in_order(text, steps):
    assert split_steps(text) == steps


def test_it_in_a_later_step_names_the_thing_the_step_before_acts_on():
    assert resolve_references(["pick up the cube", "put it down"]) == ["pick up the cube", "put the cube down"]
    assert resolve_references(["push it left"]) == ["push it left"]  # nothing before it to name
    assert resolve_references(["wave", "lift it"]) == ["wave", "lift it"]  # the step before names nothing
    # "it" as a whole word only
    assert resolve_references(["grab the red block", "lift it onto the kit"]) == \
        ["grab the red block", "lift the red block onto the kit"]
    # a particle or a direction after the object is not part of it; any case
    assert resolve_references(["pick the red cube up", "put it on the plate"])[1] == "put the red cube on the plate"
    assert resolve_references(["push the red cube left", "push it back"])[1] == "push the red cube back"
    assert resolve_references(["Pick up The red cube", "Put It down"])[1] == "Put The red cube down"
