"""Run by test_encoder_ddp: train the encoder through a partly unfrozen tiny base, under torchrun or alone.

Arguments: the tiny base folder, the output file (rank 0 writes the trained parameters).
"""

from __future__ import annotations

import sys

import torch
from encoder_helpers import DOCS, QUERIES

from liquid_lvm.encoder.model import IsotropicGaussianEncoder
from liquid_lvm.encoder.objective import ObjectiveConfig
from liquid_lvm.encoder.pairs import PairSet
from liquid_lvm.encoder.training import EncoderTrainConfig, train_encoder
from liquid_lvm.training import TrainConfig, init_distributed


def main(base: str, out: str) -> None:
    pairs = PairSet("toy", QUERIES, DOCS, [f"d{i}" for i in range(len(DOCS))], [(i, i, -1) for i in range(8)])
    enc = IsotropicGaussianEncoder(base, out_dim=16, freeze="last_n", n_unfrozen=1, seed=0)
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-3, warmup_steps=1, progress=False, device="cpu", seed=0)
    cfg = EncoderTrainConfig(lr_head=1e-2, lr_base=1e-3, objective=ObjectiveConfig(regulariser="sigreg", lam=0.3,
                                                                                 n_directions=32))
    result = train_encoder(enc, pairs, config, cfg)
    info = init_distributed("cpu")
    if info.is_main:
        params = {k: v.detach().clone() for k, v in enc.named_parameters() if v.requires_grad}
        torch.save({"params": params, "steps": result.loop.steps, "world_size": info.world_size}, out)
    if info.enabled:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
