"""Encoder training time per epoch: frozen base with cached base vectors vs through the frozen base.

Same pairs, same head, same loss, same shared loop (``liquid_lvm.training.train``); the only
difference is whether the transformer runs every step. The cached path's one-off encoding of the
texts is timed separately (it is paid once per corpus and then served from the on-disk cache).

    python bench/bench_encoder.py --pairs 256 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from liquid_lvm.encoder import IsotropicGaussianEncoder, ObjectiveConfig, pairs_from_beir
from liquid_lvm.encoder.pairs import PairSet
from liquid_lvm.encoder.training import EncoderTrainConfig, base_vectors, train_encoder
from liquid_lvm.training import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beir", default=os.path.join(os.environ.get("LIQUID_DATA_DIR", "../shared/data"), "beir/scifact"))
    ap.add_argument("--pairs", type=int, default=256, help="first N SciFact train pairs")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    full = pairs_from_beir(args.beir, "train")
    pairs = PairSet("bench", full.queries, full.docs, full.doc_keys, full.triples[: args.pairs], full.query_keys).compact()
    obj = ObjectiveConfig(regulariser="sigreg", lam=0.1)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, warmup_steps=1, progress=False,
                         device="cpu", weight_decay=0.0)
    out = {"pairs": len(pairs), "epochs": args.epochs, "threads": torch.get_num_threads()}
    enc = IsotropicGaussianEncoder()
    t0 = time.perf_counter()
    cache = (base_vectors(enc, pairs.queries, use_cache=False), base_vectors(enc, pairs.docs, use_cache=False))
    out["cache_build_seconds"] = time.perf_counter() - t0
    cached = train_encoder(enc, pairs, config, EncoderTrainConfig(cached=True, objective=obj), cache=cache)
    enc2 = IsotropicGaussianEncoder()
    through = train_encoder(enc2, pairs, config, EncoderTrainConfig(cached=False, objective=obj))
    out["cached_seconds_per_epoch"] = cached.seconds_per_epoch
    out["through_base_seconds_per_epoch"] = through.seconds_per_epoch
    out["speedup"] = through.seconds_per_epoch / cached.seconds_per_epoch
    out["max_head_difference"] = float((enc.head.linear.weight - enc2.head.linear.weight).detach().abs().max())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
