"""``vla_align_node``: perception_node and policy_node in one process, sharing one model.

Both nodes keep their names, parameters, topics and lifecycles; what they share is the
``InferenceSession`` (``session_pool``: one copy of the weights, one inference thread) and, per
camera frame, its one vision pass: perception's forward on a frame is answered once, and the
policy's forward or map look-up on the same frame (same header stamp) reads it instead of
running the vision encoder again. ``vla_align.launch.py`` starts this by default."""

from __future__ import annotations

import sys

from .perception_node import PerceptionNode
from .policy_node import PolicyNode
from .process import run


def main() -> int:
    return run(PerceptionNode, PolicyNode)


if __name__ == "__main__":
    sys.exit(main())
