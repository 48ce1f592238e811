"""Under torchrun DDP (2 CPU processes, gloo on loopback) the trimodal loss sees negatives
from every rank: its value and gradients equal one process on the concatenated batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("loss_type", ["infonce", "siglip", "siglip_chunked"])
def test_ddp_two_ranks_equal_one_process(loss_type, tmp_path):
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    single, dual = tmp_path / "single.pt", tmp_path / "dual.pt"
    subprocess.run([sys.executable, str(WORKER), loss_type, str(single)], check=True, env=env, timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                    "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(WORKER), loss_type, str(dual)],
                   check=True, env=env, timeout=180, capture_output=True)
    a = torch.load(single, weights_only=True)
    b = torch.load(dual, weights_only=True)
    torch.testing.assert_close(b["loss"], a["loss"], rtol=1e-5, atol=1e-6)
    assert set(a["grads"]) == set(b["grads"]) and len(a["grads"]) >= 6
    for name in a["grads"]:
        torch.testing.assert_close(b["grads"][name], a["grads"][name], rtol=1e-4, atol=1e-6, msg=name)
