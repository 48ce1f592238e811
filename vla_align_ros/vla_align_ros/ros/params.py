"""Parameter descriptors: every parameter is declared with a description and, where numeric, a range."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def describe(text: str, read_only: bool = True, lo: float | None = None, hi: float | None = None,
             integer: bool = False) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text, read_only=read_only)
    if lo is not None and hi is not None:
        if integer:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d
