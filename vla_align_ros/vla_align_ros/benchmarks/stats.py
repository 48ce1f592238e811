"""Latency summaries shared by the benchmarks."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def summary_ms(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, mean and count of latencies in milliseconds."""
    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        return {"n": 0, "p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "mean": float("nan")}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "mean": round(float(a.mean()), 3)}
