#!/usr/bin/env python3
"""The full soak of the fault battery (item 16): policy_node receives 640x480 frames at 30 Hz for
ten minutes (``--seconds``); prints JSON with the chunk latency (p50, p99), the node's resident
memory at the start and end of the steady part, and its drop counters. ``make test`` runs the
same scenario for 15 s (test/ros/test_battery_ros.py::test_16_...).

    .venv/bin/python scripts/soak.py --checkpoint runs/sim_tiny [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "test" / "ros"), str(REPO / "test"), str(REPO / "vla_align_ros")]  # the battery and its conftest
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "88")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="run folder or checkpoint folder")
    ap.add_argument("--seconds", type=float, default=600.0)
    a = ap.parse_args()
    from test_battery_ros import TIMING, run_scenario

    from vla_align_ros.ros.model_node import checkpoint_dir

    r, log, code, rss = run_scenario(Path(checkpoint_dir(a.checkpoint)), "soak", 0, params=TIMING,
                                     probe_args=[str(a.seconds)], sample_rss=True, timeout=a.seconds + 240)
    steady = rss[len(rss) // 3:] or rss
    print(json.dumps({"seconds": a.seconds, "chunks": r["chunks_in_soak"], "latency_s_p50": r["latency_p50"],
                      "latency_s_p99": r["latency_p99"], "rss_kib_steady_first": steady[0] if steady else None,
                      "rss_kib_steady_last": steady[-1] if steady else None,
                      "rss_kib_steady_range": (max(steady) - min(steady)) if steady else None,
                      "drops": (r["status"] or {}).get("drops"), "exit_code": code}, indent=2))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
