"""Policies: what the arm does for an instruction, behind one interface (``Policy``) and a
registry by name (``make_policy``). ``affordance`` (default): the model's pick/place maps and its
intent head drive generic motion primitives; ``chunk``: the learned action-chunk head;
``rules``: a rule parser and the scripted plan, kept as a named baseline."""

from .base import EE_TWIST, EE_TWIST_DIMS, ActionChunk, Observation, Policy, Refusal
from .registry import DEFAULT_POLICY, POLICIES, make_policy, register_policy
from .robot import RobotInterface

__all__ = ["ActionChunk", "DEFAULT_POLICY", "EE_TWIST", "EE_TWIST_DIMS", "Observation", "POLICIES", "Policy",
           "Refusal", "RobotInterface", "make_policy", "register_policy"]
