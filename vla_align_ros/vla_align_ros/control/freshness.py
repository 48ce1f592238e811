"""Freshness of stamped inputs (pure Python, no ROS): drop what is stale, from the future, or
arrives out of order, and count why."""

from __future__ import annotations

import math

REASONS = ("future", "too_old", "out_of_order")


def _seconds_to_ns(value: float, name: str) -> int:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value}: must be a finite number >= 0")
    return int(round(value * 1e9))


class StampFilter:
    """Accepts a header stamp when it is at most ``max_future_s`` ahead of now (clock skew
    between machines), at most ``max_age_s`` old, and newer than the last accepted stamp.

    Call ``reset()`` when the stream starts over (an instruction change, a reactivation) so a
    stamp from before that moment is judged only on its age."""

    def __init__(self, max_age_s: float = 0.5, max_future_s: float = 0.05) -> None:
        self.max_age_ns = _seconds_to_ns(max_age_s, "max_age_s")
        self.max_future_ns = _seconds_to_ns(max_future_s, "max_future_s")
        self.last_ns: int | None = None
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)

    def check(self, stamp_ns: int, now_ns: int) -> str | None:
        """None when ``stamp_ns`` is acceptable (it becomes the last accepted stamp), otherwise
        the reason key ('future', 'too_old', 'out_of_order'), counted in ``counts``."""
        stamp_ns, now_ns = int(stamp_ns), int(now_ns)
        age = now_ns - stamp_ns
        if age < -self.max_future_ns:
            reason = "future"
        elif age > self.max_age_ns:
            reason = "too_old"
        elif self.last_ns is not None and stamp_ns <= self.last_ns:
            reason = "out_of_order"
        else:
            self.last_ns = stamp_ns
            return None
        self.counts[reason] += 1
        return reason

    def reset(self) -> None:
        """Forget the last accepted stamp (the counts are kept)."""
        self.last_ns = None
