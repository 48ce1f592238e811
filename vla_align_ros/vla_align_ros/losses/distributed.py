"""Negatives from every rank under torchrun DDP.

``gather_with_grad`` concatenates a tensor from all ranks (rank order) and, in backward,
sums the incoming gradients over ranks before handing each rank its own slice, so the loss
computed on the gathered batch back-propagates into every rank's encoder. Uses all_gather
and all_reduce only, which gloo (CPU) and NCCL both support.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank = dist.get_rank()
        ctx.n = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: Tensor) -> Tensor:
    """(B, ...) on each rank -> (world * B, ...), differentiable. Identity when not distributed.
    Every rank must pass the same B."""
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def local_slice(n_local: int) -> slice:
    """Rows of the gathered batch that belong to this rank."""
    rank = dist.get_rank() if is_distributed() else 0
    return slice(rank * n_local, (rank + 1) * n_local)
