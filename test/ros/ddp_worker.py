"""Run by test_distributed.py under torchrun (2 CPU processes, gloo) or alone (one process on
the whole batch). Writes the loss and every gradient so the test can compare the two."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vla_align_ros"))  # the source tree

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from vla_align_ros.config import LossConfig  # noqa: E402
from vla_align_ros.losses import TrimodalLoss  # noqa: E402

GLOBAL_BATCH = 8
IDS = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5])  # duplicates inside and across ranks


class Toy(nn.Module):
    def __init__(self, loss_type: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.ModuleDict({"vision": nn.Linear(6, 4), "text": nn.Linear(5, 4), "action": nn.Linear(3, 4)})
        cfg = LossConfig(vl=loss_type, va=loss_type, la=loss_type, alpha=1.0, beta=0.5, gamma=0.25,
                         siglip_chunk=3, siglip_init_bias=-2.0, siglip_init_logit_scale=5.0)
        self.loss = TrimodalLoss(cfg, embed_dim=4)

    def forward(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        emb = {k: F.normalize(self.enc[k](inputs[k]), dim=-1) for k in self.enc}
        return self.loss(emb, ids).total


def main() -> None:
    loss_type, out = sys.argv[1], Path(sys.argv[2])
    g = torch.Generator().manual_seed(123)
    inputs = {"vision": torch.randn(GLOBAL_BATCH, 6, generator=g), "text": torch.randn(GLOBAL_BATCH, 5, generator=g),
              "action": torch.randn(GLOBAL_BATCH, 3, generator=g)}
    model = Toy(loss_type)
    ids = IDS
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        n = GLOBAL_BATCH // world
        inputs = {k: v[rank * n : (rank + 1) * n] for k, v in inputs.items()}
        ids = IDS[rank * n : (rank + 1) * n]
        model = nn.parallel.DistributedDataParallel(model)
        loss = model(inputs, ids)
        loss.backward()  # DDP averages the gradients over ranks
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world
        module = model.module
    else:
        rank = 0
        loss = model(inputs, ids)
        loss.backward()
        mean_loss = loss.detach()
        module = model
    if rank == 0:
        grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
        torch.save({"loss": mean_loss, "grads": grads}, out)
    if dist.is_initialized():
        dist.barrier()  # both ranks done (rank 0 has written) before gloo tears down its pairs
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Skip interpreter teardown: gloo's background threads can abort a process that is
    # already done ("terminate called without an active exception") while static objects die.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
