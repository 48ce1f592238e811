"""Node status -> ``diagnostic_msgs/DiagnosticStatus``: the one mapping every node's /diagnostics uses.

Each node keeps its detailed status as a dict (the JSON on its ``~/status`` or ``~/stats``
topic). ``diagnose`` turns one such dict, and the one before it, into a level, a one-line
message and the counters as key/value pairs; it imports nothing from ROS, so it is tested
without a graph. ``DiagnosticsPublisher`` sends the result on ``/diagnostics`` as a
``DiagnosticArray``, as diagnostic_updater does, for robot dashboards and diagnostic_aggregator.

Levels (the worst condition wins, every condition is named in the message):
- ERROR: a fault that stopped the node, a latched e-stop, a publisher of the wrong message type
  on a subscribed topic, a failed training run;
- WARN: inactive (unconfigured or deactivated), drops / rejected commands / dropped or refused
  safety commands since the last status, a stopped training run;
- STALE: active, but inputs the node needs are stale (the policy holds the arm);
- OK: otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Mapping

DIAGNOSTICS_TOPIC = "/diagnostics"  # absolute by ROS convention: one topic for the whole robot
STATUS_PERIOD_S = 1.0  # how often a node reports (/diagnostics, and its JSON status)
# Safety counters that mean a command was not sent as the model asked (others: passed, clamped,
# holds, per-limit reasons, are normal operation).
SAFETY_WARNINGS = ("dropped", "non_finite_chunk", "action_space_mismatch", "action_space_unknown")


class Level(IntEnum):
    """``diagnostic_msgs/DiagnosticStatus`` levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class Diagnosis:
    level: Level
    message: str  # one line
    values: tuple[tuple[str, str], ...]  # flattened status: ("drops.image_stale", "3"), ...


def flatten(status: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A nested status dict -> sorted ``(dotted.key, text)`` pairs; lists comma-joined, None as ''."""
    out: list[tuple[str, str]] = []
    for key, value in status.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out.append((name, ", ".join(str(v) for v in value)))
        elif value is None:
            out.append((name, ""))
        elif isinstance(value, float):
            out.append((name, f"{value:.4g}"))
        else:
            out.append((name, str(value)))
    return sorted(out)


def _grown(now: Mapping[str, Any] | None, before: Mapping[str, Any] | None,
           keys: tuple[str, ...] | None = None) -> dict[str, int]:
    """Counters of ``now`` that increased since ``before`` -> {name: increase}."""
    before = before or {}
    return {k: int(v) - int(before.get(k, 0)) for k, v in (now or {}).items()
            if isinstance(v, (int, float)) and (keys is None or k in keys) and v > before.get(k, 0)}


def _counts(grown: dict[str, int]) -> str:
    return ", ".join(f"{k} +{n}" for k, n in sorted(grown.items()))


def diagnose(status: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> Diagnosis:
    """One node's status dict (and the previous one, for counters that grew) -> its diagnosis."""
    prev = previous or {}
    found: list[tuple[Level, str]] = []
    if status.get("fault"):
        found.append((Level.ERROR, f"fault: {status['fault']}"))
    if status.get("estop"):
        found.append((Level.ERROR, "e-stop latched"))
    for topic, types in sorted((status.get("type_mismatch") or {}).items()):
        found.append((Level.ERROR, f"type mismatch on {topic}: {', '.join(types)} published"))
    state = status.get("state")
    if state == "failed":
        found.append((Level.ERROR, f"training failed: {status.get('error', '')}"))
    if status.get("active") is False:
        found.append((Level.WARN, "inactive"))
    if state == "stopped":
        found.append((Level.WARN, f"training stopped at step {status.get('steps')} (resumable)"))
    for label, key, keys in (("drops", "drops", None), ("rejected", "rejected", None),
                             ("safety", "safety", SAFETY_WARNINGS)):
        grown = _grown(status.get(key), prev.get(key), keys)
        if grown:
            found.append((Level.WARN, f"{label}: {_counts(grown)}"))
    if status.get("active") and status.get("stale"):
        found.append((Level.STALE, f"stale inputs: {', '.join(status['stale'])}"))
    if not found:
        level, message = Level.OK, _ok_message(status)
    else:
        order = (Level.ERROR, Level.STALE, Level.WARN)  # STALE outranks WARN on a dashboard
        found.sort(key=lambda f: order.index(f[0]))
        level, message = found[0][0], "; ".join(text for _, text in found)
    return Diagnosis(level, message, tuple(flatten(status)))


def _ok_message(status: Mapping[str, Any]) -> str:
    if "state" in status:
        return f"{status['state']}" + (f": step {status['step']}/{status['steps']}" if "step" in status else "")
    if status.get("active"):
        return "active"
    return "running"


def to_msg(name: str, diagnosis: Diagnosis, hardware_id: str = "") -> Any:
    """A ``diagnostic_msgs/DiagnosticStatus`` named ``name`` (the node's fully qualified name)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    return DiagnosticStatus(level=bytes([int(diagnosis.level)]), name=name, message=diagnosis.message,
                            hardware_id=hardware_id, values=[KeyValue(key=k, value=v) for k, v in diagnosis.values])


class DiagnosticsPublisher:
    """A node's publisher on /diagnostics (a plain publisher: a lifecycle node reports while
    inactive too). ``publish(status)`` sends one DiagnosticArray with this node's status."""

    def __init__(self, node: Any, hardware_id: str = "") -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from .qos import DIAGNOSTICS_QOS

        self._node, self._hardware_id = node, hardware_id
        self._array = DiagnosticArray
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._previous: Mapping[str, Any] | None = None
        self.last: Diagnosis | None = None

    def publish(self, status: Mapping[str, Any]) -> Diagnosis:
        status = snapshot(status)
        diagnosis = diagnose(status, self._previous)
        self._previous, self.last = status, diagnosis
        msg = self._array(status=[to_msg(self._node.get_fully_qualified_name(), diagnosis, self._hardware_id)])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
        return diagnosis


def snapshot(status: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a status dict and the dicts in it (one C-level copy each, so a counter the
    inference thread bumps meanwhile cannot break an iteration over it)."""
    return {k: dict(v) if isinstance(v, dict) else v for k, v in dict(status).items()}
