"""Test environment: DDS stays on this machine, each run gets its own domain, no hub access."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # test the source tree (the venv holds an installed copy too)

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
