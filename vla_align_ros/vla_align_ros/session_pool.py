"""One model per process: nodes that load the same checkpoint onto the same device share one
``InferenceSession`` (one copy of the weights, one inference thread, the frame cache), counted
by reference and closed when the last of them lets go. Pure Python; the ROS nodes use it on
configure and cleanup."""

from __future__ import annotations

import os
import threading

from .inference import InferenceSession

_lock = threading.Lock()
_sessions: dict[tuple[str, str, int, str], tuple[InferenceSession, int]] = {}


def _key(checkpoint: str, device: str, threads: int, precision: str) -> tuple[str, str, int, str]:
    return os.path.realpath(checkpoint), device, int(threads), precision


def acquire(checkpoint: str, device: str = "cpu", threads: int = 0, precision: str = "fp32") -> InferenceSession:
    """The process's session for this checkpoint, device, thread count and precision (loaded on
    first use)."""
    key = _key(checkpoint, device, threads, precision)
    with _lock:
        hit = _sessions.get(key)
        if hit is not None:
            _sessions[key] = (hit[0], hit[1] + 1)
            return hit[0]
        session = InferenceSession(checkpoint, device, threads=threads, precision=precision)
        _sessions[key] = (session, 1)
        return session


def release(session: InferenceSession) -> bool:
    """Let go of ``session``; True when this was the last holder and it was closed."""
    with _lock:
        for key, (s, n) in list(_sessions.items()):
            if s is session:
                if n > 1:
                    _sessions[key] = (s, n - 1)
                    return False
                del _sessions[key]
                break
        else:
            return False
    session.close()
    return True


def holders(session: InferenceSession) -> int:
    """How many nodes hold ``session`` (0: not from the pool)."""
    with _lock:
        return next((n for s, n in _sessions.values() if s is session), 0)
