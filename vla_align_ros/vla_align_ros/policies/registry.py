"""Policies by name. Each entry is imported only when made, so loading the node for one policy
does not import another's dependencies (the ``rules`` baseline knows the simulator; the others
do not)."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Policy

POLICIES: dict[str, str] = {
    "affordance": "vla_align_ros.policies.affordance:AffordancePolicy",
    "chunk": "vla_align_ros.policies.chunk:ChunkPolicy",
    "rules": "vla_align_ros.sim.rules_policy:RulesPolicy",
}
DEFAULT_POLICY = "affordance"


def register_policy(name: str, target: str) -> None:
    """Add a policy: ``target`` is "module:Class", a ``Policy`` subclass taking (session, robot, **options)."""
    POLICIES[name] = target


def make_policy(name: str, session: Any, robot: Any, **options: Any) -> Policy:
    """The policy ``name`` over an ``InferenceSession`` and a ``RobotInterface``."""
    if name not in POLICIES:
        raise ValueError(f"policy={name!r}: known policies are {sorted(POLICIES)}")
    module, cls = POLICIES[name].split(":")
    return getattr(importlib.import_module(module), cls)(session, robot, **options)
