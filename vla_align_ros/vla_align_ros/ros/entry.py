"""The node executables' entry points. A Ctrl-C (or SIGTERM from launch) that arrives while a
node is still importing torch or MuJoCo, or building itself, ends the process quietly with exit
code 0: nothing has been commanded yet, so there is nothing to hold and no traceback to show.
Once a node runs, its own ``main`` handles the signals (final hold, saved resume state)."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _quit_now(module: str) -> None:
    print(f"{module.rsplit('.', 1)[-1]}: interrupted while starting", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Leave without running destructors: a half-built renderer or DDS participant torn down at
    # interpreter exit would print errors about a context that no longer exists.
    os._exit(0)


def _run(module: str) -> int:
    # While the heavy imports run, a signal ends the process at once: an exception raised into a
    # C extension's import can surface as an unrelated error.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: _quit_now(module))
    main = importlib.import_module(module).main
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(main() or 0)
    except KeyboardInterrupt:  # before the node's own handlers were installed
        _quit_now(module)
        return 0


def sim_node() -> int:
    return _run("vla_align_ros.ros.sim_node")


def trainer_node() -> int:
    return _run("vla_align_ros.ros.trainer_node")


def perception_node() -> int:
    return _run("vla_align_ros.ros.perception_node")


def policy_node() -> int:
    return _run("vla_align_ros.ros.policy_node")


def vla_align_node() -> int:
    return _run("vla_align_ros.ros.vla_align_node")
