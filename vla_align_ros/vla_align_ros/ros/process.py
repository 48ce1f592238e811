"""Running the package's nodes in a process: one or several nodes on one single-threaded
executor, lifecycle nodes configured and activated on start when their ``autostart`` parameter
says so, and a stop (SIGINT, SIGTERM) that lets every node that commands the arm send its hold
on a live context before anything shuts down. A signal during a lifecycle transition (a
configure loading the model, a deactivate sending its hold) lets the transition finish and
stops right after it: an exception raised into it could cut a hold short, or land in a
destructor, where Python drops it."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.signals import SignalHandlerOptions

SIGNAL_POLL_S = 0.25  # longest the spin waits in C before a pending signal is handled


def autostart(node: LifecycleNode, stop: threading.Event) -> None:
    """configure + activate, as a lifecycle manager would; logs and leaves the node unconfigured
    when configure fails, and inactive when a stop was requested meanwhile."""
    from lifecycle_msgs.msg import State

    node.trigger_configure()
    if node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE and not stop.is_set():  # noqa: SLF001
        node.trigger_activate()


def in_transition(node: Any) -> bool:
    """Whether a lifecycle node is in one of its transition states (configuring, activating, ...)."""
    from lifecycle_msgs.msg import State

    state = getattr(node, "_state_machine", None)
    return state is not None and state.current_state[0] >= State.TRANSITION_STATE_CONFIGURING


def run(*node_factories: Callable[[], Any]) -> int:
    """Build the nodes (in order; nodes of one process on the same checkpoint share its model),
    spin them until SIGINT, SIGTERM or an outside shutdown, then stop each: its hold, then its
    destruction. Exit code 0."""
    # rclpy's own SIGINT/SIGTERM handlers shut the context down before this function gets control
    # back, so the final hold could not be published. Here a signal only interrupts the spin; the
    # hold goes out on a live context, then the nodes and the context are shut down.
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    nodes: list[Any] = []
    stop = threading.Event()

    def interrupt(signum: int, frame: Any) -> None:
        stop.set()  # the spin loop ends at its next turn
        if not any(in_transition(node) for node in nodes):
            raise KeyboardInterrupt  # ... or now, out of a long callback

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    # Built before the spin's try: a signal while a node builds itself (a simulator loading its
    # scene) propagates as KeyboardInterrupt to the entry point, which ends the process at once,
    # instead of shutting down a half-built node. Nothing has been commanded yet.
    nodes.extend(factory() for factory in node_factories)
    # One executor thread plus the inference thread: measured on 2 cores, a 3-thread
    # MultiThreadedExecutor made each frame 1.5x the bare model; this 1.1x.
    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        for node in nodes:
            if getattr(node, "p_autostart", False) and not stop.is_set():  # a model node (plain nodes start active)
                autostart(node, stop)
        # spin_once with a timeout, not spin(): a node with no timer (unconfigured, or its
        # configure failed) would otherwise wait in rcl_wait forever, where a signal's Python
        # handler never runs, and Ctrl-C could not stop it
        while executor.context.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if rclpy.ok():
            raise
        # a message taken while the context was shut down from outside: a clean stop
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the final hold short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for node in nodes:
            try:
                if getattr(node, "_active", False):
                    node._before_stop("shutdown")  # noqa: SLF001 - e.g. the policy's one hold before it goes
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
