"""Copies of rosbag2 recordings with some topics left out: a simulator recording without its
``/ground_truth/*`` topics reads exactly like a real robot's (``vla-align strip``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

GROUND_TRUTH_PREFIX = "/ground_truth/"


def copy_without_topics(src: str | Path, dst: str | Path, drop_prefixes: Sequence[str] = (GROUND_TRUTH_PREFIX,),
                        drop_topics: Sequence[str] = (), overwrite: bool = False) -> dict[str, int]:
    """Write ``dst``, a rosbag2 with every message of ``src`` except those on topics that start
    with one of ``drop_prefixes`` or are in ``drop_topics``; same storage, stamps and bytes.
    -> {"kept": messages, "dropped": messages}."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    src, dst = Path(src), Path(dst)
    if dst.exists():
        if not overwrite:
            raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(dst)

    def dropped(topic: str) -> bool:
        return topic in drop_topics or any(topic.startswith(p) for p in drop_prefixes)

    counts = {"kept": 0, "dropped": 0}
    with Reader(src) as reader:
        mcap = any(p.suffix == ".mcap" for p in src.iterdir()) if src.is_dir() else src.suffix == ".mcap"
        plugin = StoragePlugin.MCAP if mcap else StoragePlugin.SQLITE3
        writer = Writer(dst, version=9, storage_plugin=plugin)
        writer.open()
        try:
            out = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                               serialization_format=c.ext.serialization_format,
                                               offered_qos_profiles=c.ext.offered_qos_profiles)
                   for c in reader.connections if not dropped(c.topic)}
            for conn, stamp, raw in reader.messages():
                if conn.id in out:
                    writer.write(out[conn.id], stamp, raw)
                    counts["kept"] += 1
                else:
                    counts["dropped"] += 1
        finally:
            writer.close()
    return counts
