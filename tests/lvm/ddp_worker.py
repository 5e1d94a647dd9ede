"""Run by test_training_loop: a few steps of the shared loop, under torchrun or as one process.

Writes the final parameters to the path given as the first argument (rank 0 only).
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from liquid_lvm.training import TrainConfig, init_distributed, train


def main(out: str) -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(64, 6, generator=g)
    y = x @ torch.randn(6, 3, generator=g) + 0.1 * torch.randn(64, 3, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, warmup_steps=2, grad_clip=0.5, progress=False,
                         device="cpu", seed=3)

    def loss_fn(m, batch):
        xb, yb = batch
        return nn.functional.mse_loss(m(xb), yb)

    result = train(model, loss_fn, TensorDataset(x, y), config)
    info = init_distributed("cpu")
    if info.is_main:
        torch.save({"params": {k: v.clone() for k, v in model.state_dict().items()}, "steps": result.steps,
                    "world_size": info.world_size}, out)
    if info.enabled:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
