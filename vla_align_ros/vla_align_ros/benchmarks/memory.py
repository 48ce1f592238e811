"""Peak memory of the dense and the chunked SigLIP loss (forward + backward) at growing batch N,
and whether they agree. On CPU each measurement runs in a fresh process whose peak resident
set is read from /proc (VmHWM) with large allocations forced to mmap, so freed memory really
leaves; on CUDA, torch's peak allocator statistics."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import torch


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _inputs(n: int, dim: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(n)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1).to(device).requires_grad_()
    y = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1).to(device).requires_grad_()
    scale = torch.tensor(2.3, device=device, requires_grad=True)
    bias = torch.tensor(-10.0, device=device, requires_grad=True)
    return x, y, scale, bias


def measure(kind: str, n: int, dim: int = 128, chunk: int = 1024, device: str = "cpu") -> dict[str, Any]:
    """One loss + backward; peak memory above what the inputs already hold."""
    from ..losses.contrastive import siglip_loss, siglip_loss_chunked

    dev = torch.device(device)

    def run(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        loss = siglip_loss(x, y, scale, bias) if kind == "dense" else siglip_loss_chunked(x, y, scale, bias, chunk=chunk)
        loss.backward()
        return loss.detach()

    run(*_inputs(min(n, 256), dim, dev))  # one-time initialisation (thread pools, autograd engine) not counted
    x, y, scale, bias = _inputs(n, dim, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        base = _rss_kib("VmRSS") * 1024
    loss = run(x, y, scale, bias)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = _rss_kib("VmHWM") * 1024 - base
    return {"kind": kind, "n": n, "peak_mib": round(peak / 2**20, 2), "loss": float(loss),
            "grad_x_norm": float(x.grad.norm()), "grad_x_head": x.grad[:4, :4].flatten().tolist()}


def measure_in_process(kind: str, n: int, dim: int, chunk: int, device: str = "cpu") -> dict[str, Any]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    cmd = [sys.executable, "-m", "vla_align_ros.benchmarks.memory", kind, str(n), "--dim", str(dim), "--chunk", str(chunk), "--device", device]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"siglip memory {kind} N={n} failed: {p.stderr[-1500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def siglip_memory(ns: list[int], dim: int = 128, chunk: int = 1024, device: str = "cpu") -> dict[str, Any]:
    rows = []
    for n in ns:
        d = measure_in_process("dense", n, dim, chunk, device)
        c = measure_in_process("chunked", n, dim, chunk, device)
        grad_diff = max(abs(a - b) for a, b in zip(d["grad_x_head"], c["grad_x_head"]))
        rows.append({"n": n, "dense_peak_mib": d["peak_mib"], "chunked_peak_mib": c["peak_mib"],
                     "chunked_over_dense": round(c["peak_mib"] / max(d["peak_mib"], 1e-9), 4),
                     "loss_abs_diff": abs(d["loss"] - c["loss"]),
                     "loss_rel_diff": abs(d["loss"] - c["loss"]) / max(abs(d["loss"]), 1e-12),
                     "grad_abs_diff_sample": grad_diff})
    return {"device": device, "dim": dim, "chunk": chunk, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vla_align_ros.benchmarks.memory")
    ap.add_argument("kind", choices=["dense", "chunked"])
    ap.add_argument("n", type=int)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.kind, a.n, a.dim, a.chunk, a.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
