"""Bag ingestion (``read_episodes``: read, decode, synchronise, convert images, build episodes)
beside rosbags' bare read-and-decode of the same topics of the same bag."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..data.bags import BagTopics, read_episodes


def bare_read(bag: Path, topics: list[str]) -> tuple[int, int]:
    """rosbags alone: every message of ``topics`` read and deserialised. -> (messages, bytes)."""
    from rosbags.highlevel import AnyReader

    n = size = 0
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        for conn, _, raw in reader.messages(connections=conns):
            reader.deserialize(raw, conn.msgtype)
            n += 1
            size += len(raw)
    return n, size


def ingest_rate(bag: Path, repeats: int = 3) -> dict[str, Any]:
    """Best of ``repeats`` for each (the file is in the page cache after the first read)."""
    t = BagTopics()
    topics = [getattr(t, k) for k in vars(BagTopics()) if isinstance(getattr(t, k), str)]
    bare, ours = [], []
    n = size = frames = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n, size = bare_read(bag, topics)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        episodes, stats = read_episodes([bag])
        ours.append(time.perf_counter() - t0)
        frames = sum(len(e) for e in episodes)
    b, o = min(bare), min(ours)
    return {"bag": str(bag), "messages": n, "mib": round(size / 2**20, 2), "frames": frames,
            "bare_rosbags_s": round(b, 4), "ingest_s": round(o, 4),
            "bare_msgs_per_s": round(n / b, 1), "ingest_msgs_per_s": round(n / o, 1),
            "ingest_over_bare_rate": round(b / o, 3)}
