"""The safety filter between the policy and the arm, as plain functions and small state
machines, so every rule is tested without a ROS graph.

Rules, in order: a command with any non-finite value is dropped (the caller sends a hold); then
it is clamped to the velocity limits, to the change allowed per control cycle, and so that the
next position stays inside the joint or workspace limits. The watchdog says when an input went
stale (and asks for exactly one hold per stale period); the e-stop latches until an explicit
reset, and a silent e-stop publisher counts as a stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

import numpy as np


class Outcome(str, Enum):
    PASSED = "passed"  # unchanged
    CLAMPED = "clamped"  # changed to respect a limit
    DROPPED = "dropped"  # not sent (non-finite or malformed); the caller holds


@dataclass
class FilterResult:
    command: np.ndarray | None  # None when dropped
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)  # which limits acted, for counting and logs


@dataclass
class SafetyCounters:
    """Counts of what the filter did, by reason (published as diagnostics by the node)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, result: FilterResult) -> None:
        self.counts[result.outcome.value] = self.counts.get(result.outcome.value, 0) + 1
        for r in result.reasons:
            self.counts[r] = self.counts.get(r, 0) + 1


def _arr(name: str, v: Sequence[float] | np.ndarray, n: int | None = None) -> np.ndarray:
    a = np.asarray(v, dtype=float).reshape(-1)
    if n is not None and a.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got {a.shape[0]}")
    return a


@dataclass
class TwistLimits:
    """Cartesian servo limits (base frame)."""

    max_linear: float = 0.25  # m/s, norm of (vx, vy, vz)
    max_angular: float = 1.0  # rad/s, norm of (wx, wy, wz)
    max_linear_change: float = 0.05  # m/s per control cycle
    max_angular_change: float = 0.2  # rad/s per control cycle
    workspace_low: tuple[float, float, float] = (0.25, -0.35, 0.045)
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.45)

    def __post_init__(self) -> None:
        for name in ("max_linear", "max_angular", "max_linear_change", "max_angular_change"):
            if not getattr(self, name) > 0:
                raise ValueError(f"safety.{name}={getattr(self, name)}: must be > 0")
        if np.any(np.asarray(self.workspace_low) >= np.asarray(self.workspace_high)):
            raise ValueError(f"safety.workspace_low={self.workspace_low} must be below workspace_high={self.workspace_high}")


@dataclass
class JointLimits:
    """Joint-space limits, in the order of ``names``."""

    names: list[str]
    lower: list[float]  # rad
    upper: list[float]
    max_velocity: list[float]  # rad/s
    max_step: float = 0.05  # rad: most a target may move per control cycle

    def __post_init__(self) -> None:
        n = len(self.names)
        for name in ("lower", "upper", "max_velocity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"safety.{name} has {len(getattr(self, name))} values for {n} joints {self.names}")
        if np.any(np.asarray(self.lower) >= np.asarray(self.upper)):
            raise ValueError("safety.lower must be below safety.upper for every joint")
        if np.any(np.asarray(self.max_velocity) <= 0) or self.max_step <= 0:
            raise ValueError("safety.max_velocity and safety.max_step must be > 0")

    def check_joint_names(self, received: Iterable[str]) -> list[int]:
        """Index of each limited joint in a received ``joint_states.name`` list; a ValueError
        that names what is missing or repeated when they do not match."""
        got = list(received)
        idx = joint_indices(self.names, got)
        if len(set(got)) != len(got):
            raise ValueError(f"joint_states names repeat: {got}")
        return idx


def joint_indices(wanted: Sequence[str], received: Sequence[str]) -> list[int]:
    """Index of each wanted joint in a received ``joint_states.name`` list; a ValueError naming
    the missing joints and what was received when any is absent."""
    got = list(received)
    missing = [n for n in dict.fromkeys(wanted) if n not in got]
    if missing:
        raise ValueError(f"joint_states has no {missing}; it has {got}; configured joints are {list(wanted)}")
    return [got.index(n) for n in wanted]


def _clamp_norm(v: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    n = float(np.linalg.norm(v))
    if n > limit:
        return v * (limit / n), True
    return v, False


def filter_twist(twist: Sequence[float] | np.ndarray, ee_position: Sequence[float] | np.ndarray,
                 previous: Sequence[float] | np.ndarray | None, limits: TwistLimits, dt: float) -> FilterResult:
    """twist: (6,) [vx vy vz wx wy wz]; ee_position: (3,) now; previous: the twist sent last
    cycle (None = at rest); dt: control period, s."""
    t = np.asarray(twist, dtype=float).reshape(-1)
    if t.shape != (6,):
        return FilterResult(None, Outcome.DROPPED, ["bad_size"])
    if not np.all(np.isfinite(t)):
        return FilterResult(None, Outcome.DROPPED, ["non_finite"])
    ee = _arr("ee_position", ee_position, 3)
    prev = np.zeros(6) if previous is None else _arr("previous", previous, 6)
    reasons: list[str] = []
    lin, c1 = _clamp_norm(t[:3], limits.max_linear)
    ang, c2 = _clamp_norm(t[3:], limits.max_angular)
    if c1 or c2:
        reasons.append("velocity")
    # Per-cycle change (acceleration) limit.
    dl, c3 = _clamp_norm(lin - prev[:3], limits.max_linear_change)
    da, c4 = _clamp_norm(ang - prev[3:], limits.max_angular_change)
    lin, ang = prev[:3] + dl, prev[3:] + da
    if c3 or c4:
        reasons.append("rate")
    # Workspace: no component may carry the end effector further outside the box; inside, the
    # step is shortened so the next position stays in it. This wins over the rate limit: at
    # the wall the arm stops.
    lo, hi = np.asarray(limits.workspace_low), np.asarray(limits.workspace_high)
    nxt = ee + lin * dt
    fixed = lin.copy()
    for i in range(3):
        if nxt[i] > hi[i] and lin[i] > 0:
            fixed[i] = max((hi[i] - ee[i]) / dt, 0.0)
        elif nxt[i] < lo[i] and lin[i] < 0:
            fixed[i] = min((lo[i] - ee[i]) / dt, 0.0)
    if not np.allclose(fixed, lin):
        reasons.append("workspace")
        lin = fixed
    out = np.r_[lin, ang]
    return FilterResult(out, Outcome.CLAMPED if reasons else Outcome.PASSED, reasons)


def filter_joint_target(target: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray,
                        previous: Sequence[float] | np.ndarray | None, limits: JointLimits, dt: float) -> FilterResult:
    """target: (J,) joint positions to reach in ``dt`` s; current: (J,) measured; previous: the
    target sent last cycle (None = the current positions)."""
    n = len(limits.names)
    q = np.asarray(target, dtype=float).reshape(-1)
    if q.shape != (n,):
        return FilterResult(None, Outcome.DROPPED, ["bad_size"])
    if not np.all(np.isfinite(q)):
        return FilterResult(None, Outcome.DROPPED, ["non_finite"])
    cur = _arr("current", current, n)
    prev = cur if previous is None else _arr("previous", previous, n)
    reasons: list[str] = []
    lo, hi = np.asarray(limits.lower), np.asarray(limits.upper)
    out = np.clip(q, lo, hi)
    if not np.array_equal(out, q):
        reasons.append("position")
    # Change relative to the last target, then velocity relative to the measured position (the
    # physical bound wins when the two disagree).
    stepped = np.clip(out, prev - limits.max_step, prev + limits.max_step)
    if not np.array_equal(stepped, out):
        reasons.append("rate")
    vmax = np.asarray(limits.max_velocity) * dt
    slowed = np.clip(stepped, cur - vmax, cur + vmax)
    if not np.array_equal(slowed, stepped):
        reasons.append("velocity")
    out = np.clip(slowed, lo, hi)  # the measured position may itself be past a limit
    return FilterResult(out, Outcome.CLAMPED if reasons else Outcome.PASSED, reasons)


def filter_gripper(width: float, low: float, high: float) -> FilterResult:
    w = float(width)
    if not np.isfinite(w):
        return FilterResult(None, Outcome.DROPPED, ["non_finite"])
    c = min(max(w, low), high)
    return FilterResult(np.array([c]), Outcome.CLAMPED if c != w else Outcome.PASSED, ["gripper"] if c != w else [])


class Watchdog:
    """Tracks when each input was last fresh; ``stale(now)`` lists the inputs older than the
    timeout (or never seen). The node sends one hold when this list stops being empty while
    the arm moves, then stays silent."""

    def __init__(self, inputs: Sequence[str], timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"watchdog timeout {timeout_s}: must be > 0")
        self.timeout_s = timeout_s
        self.last: dict[str, float | None] = {k: None for k in inputs}

    def feed(self, name: str, now: float) -> None:
        if name not in self.last:
            raise KeyError(f"watchdog knows {list(self.last)}, not {name!r}")
        self.last[name] = now

    def stale(self, now: float) -> list[str]:
        return [k for k, t in self.last.items() if t is None or now - t > self.timeout_s]


class EStopLatch:
    """Latches on a True message or when the e-stop publisher goes silent longer than
    ``heartbeat_s`` (0 = no heartbeat required); only ``reset()`` clears it, and only while the
    latest message says False and is fresh."""

    def __init__(self, heartbeat_s: float = 0.0) -> None:
        self.heartbeat_s = heartbeat_s
        self.latched = False
        self.reason = ""
        self._last_value: bool | None = None
        self._last_time: float | None = None

    def on_message(self, value: bool, now: float) -> None:
        self._last_value, self._last_time = bool(value), now
        if value:
            self.latched, self.reason = True, "e-stop pressed"

    def check(self, now: float) -> bool:
        """True while stopped (latched)."""
        if self.heartbeat_s > 0 and (self._last_time is None or now - self._last_time > self.heartbeat_s):
            if not self.latched:
                self.latched = True
                self.reason = "e-stop publisher silent" if self._last_time is not None else "no e-stop publisher"
        return self.latched

    def reset(self, now: float) -> bool:
        """Clear the latch if the e-stop is released and alive; returns whether it cleared."""
        alive = self.heartbeat_s <= 0 or (self._last_time is not None and now - self._last_time <= self.heartbeat_s)
        if self._last_value is not True and alive:
            self.latched, self.reason = False, ""
        return not self.latched
