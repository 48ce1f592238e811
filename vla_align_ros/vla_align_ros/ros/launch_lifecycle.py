"""Lifecycle nodes driven by launch, as ros2/demos' lifecycle_py and launch_ros' lifecycle example
do: launch starts a ``LifecycleNode`` (with ``autostart`` false), asks it to configure
(``EmitEvent(ChangeState(configure))``), and when the node reports configuring -> inactive
(``OnStateTransition``) asks it to activate. A later active -> inactive (a fault, or an operator
deactivating it) is left alone. Imported by the launch files only."""

from __future__ import annotations

from typing import Any

from launch import Condition, LaunchContext
from launch.actions import EmitEvent, LogInfo, RegisterEventHandler
from launch.events import matches_action
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

LOG_PREFIX = "launch lifecycle"  # tests find launch's own transition requests by this
# No transition is requested once launch shuts down (a node that finished configuring after Ctrl-C
# is not activated on its way out).
RUNNING = Condition(predicate=lambda context: not context.is_shutdown)


class ShutdownSafeLifecycleNode(LifecycleNode):
    """launch_ros' LifecycleNode, less one shutdown race of launch_ros 0.28: a change_state call
    still pending when launch shuts down (Ctrl-C while a node configures) can reach its service
    client after launch destroyed it ("cannot use Destroyable because destruction was
    requested"), which launch reports as an error and exits 1. Once launch is shutting down,
    that call ends quietly; the node itself gets launch's SIGINT as always."""

    def _call_change_state(self, request: Any, context: LaunchContext) -> None:
        try:
            super()._call_change_state(request, context)
        except Exception:  # noqa: BLE001 - only swallowed on the way out
            if not context.is_shutdown:
                raise


def _request(node: LifecycleNode, transition: int, condition: Any) -> EmitEvent:
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition),
                     condition=condition)


def managed_lifecycle_node(*, name: str, parameters: list[Any], **kwargs: Any) -> list[Any]:
    """A ``LifecycleNode`` (``autostart`` false: launch owns its transitions), the handler that
    activates it once configured, one that logs it active, and the configure request. ``kwargs``
    go to ``LifecycleNode`` (package, executable, namespace, output, condition, ...); a
    ``condition`` applies to every action."""
    node = ShutdownSafeLifecycleNode(name=name, parameters=[*parameters, {"autostart": False}], **kwargs)
    condition = kwargs.get("condition")
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[LogInfo(msg=f"{LOG_PREFIX}: {name} configured, requesting activate", condition=RUNNING),
                  _request(node, Transition.TRANSITION_ACTIVATE, RUNNING)]), condition=condition)
    active = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="activating", goal_state="active",
        entities=[LogInfo(msg=f"{LOG_PREFIX}: {name} is active")]), condition=condition)
    return [activate, active, node, LogInfo(msg=f"{LOG_PREFIX}: {name} requesting configure", condition=condition),
            _request(node, Transition.TRANSITION_CONFIGURE, condition)]
