"""Under torchrun DDP (2 CPU processes, gloo on loopback) the trimodal loss sees negatives
from every rank: its value and gradients equal one process on the concatenated batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


@pytest.mark.parametrize("loss_type", ["infonce", "siglip", "siglip_chunked"])
def test_ddp_two_ranks_equal_one_process(loss_type, tmp_path):
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    single, dual = tmp_path / "single.pt", tmp_path / "dual.pt"
    subprocess.run([sys.executable, str(WORKER), loss_type, str(single)], check=True, env=env, timeout=120)
    # --standalone: a rendezvous on localhost with a port the OS picks, so parallel runs never collide.
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(WORKER), loss_type, str(dual)], env=env, timeout=180, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a = torch.load(single, weights_only=True)
    b = torch.load(dual, weights_only=True)
    torch.testing.assert_close(b["loss"], a["loss"], rtol=1e-5, atol=1e-6)
    assert set(a["grads"]) == set(b["grads"]) and len(a["grads"]) >= 6
    for name in a["grads"]:
        torch.testing.assert_close(b["grads"][name], a["grads"][name], rtol=1e-4, atol=1e-6, msg=name)
