"""policy_node, the real node class, in its own process over DDS, with a model that misbehaves
on purpose (battery items 1, 3, 4, 17). VLA_FAULT selects the fault:
  none | slow:SECONDS | hang_after:N | nan | raise_after:N | oom_after:N
VLA_CHECKPOINT is the checkpoint folder; node parameters come on the command line (--ros-args)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

from vla_align_ros.inference import FrameResult, InferenceSession
from vla_align_ros.ros import policy_node


class FaultySession(InferenceSession):
    def __init__(self, checkpoint: str, fault: str) -> None:
        super().__init__(checkpoint)
        kind, _, arg = fault.partition(":")
        self.kind, self.arg, self.calls = kind, float(arg or 0), 0

    def _step(self, image: np.ndarray, state: np.ndarray | None, key: object = None) -> FrameResult:
        self.calls += 1
        late = self.calls > self.arg
        if self.kind == "slow":
            time.sleep(self.arg)
        elif self.kind == "hang_after" and late:
            time.sleep(8.0)  # the model stops answering
        elif self.kind == "raise_after" and late:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        elif self.kind == "oom_after" and late:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        res = super()._step(image, state, key)
        if self.kind == "nan" and self.calls % 2 == 0:
            res.actions[1, 0] = np.nan  # one value of every other chunk
        return res


if __name__ == "__main__":
    session = FaultySession(os.environ["VLA_CHECKPOINT"], os.environ.get("VLA_FAULT", "none"))
    sys.exit(policy_node.run(lambda: policy_node.PolicyNode(session=session)))
