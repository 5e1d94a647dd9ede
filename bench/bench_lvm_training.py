"""Benchmark: training throughput (sequences/s) of the four next-chunk models, and the Mamba
block's parallel scan versus the same block with the step-by-step loop scan, in one process.

    .venv/bin/python bench/bench_lvm_training.py                    # T=8, D=384, width 256, depth 2, batch 128
    .venv/bin/python bench/bench_lvm_training.py --context 32 --steps 20

Each model trains ``--steps`` optimiser steps (forward, InfoNCE with 1,024 bank negatives,
backward, AdamW) on random unit vectors after ``--warmup`` untimed steps; we report the median
of ``--repeats`` timings. The scan comparison times forward + backward of one Mamba model with
its ``selective_scan`` (log2 T vectorised steps) against ``selective_scan_reference`` (a Python
loop over T) on the same weights and batch; both must agree (the largest difference is printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from liquid_lvm.models import ModelConfig, build_model, selective_scan, selective_scan_reference
from liquid_lvm.training import count_parameters
from liquid_lvm.training.losses import infonce_loss


def _train_steps(model, batch, bank, steps: int) -> float:
    ctx, target = batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = infonce_loss(model(ctx), target, bank=bank)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def _fwd_bwd(model, ctx, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(ctx).pow(2).mean().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--context", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    d = 384
    ctx = torch.nn.functional.normalize(torch.randn(args.batch, args.context, d), dim=-1)
    target = torch.nn.functional.normalize(torch.randn(args.batch, d), dim=-1)
    bank = torch.nn.functional.normalize(torch.randn(1024, d), dim=-1)
    print(f"# LVM training throughput: T={args.context}, D={d}, width {args.width}, depth {args.depth}, "
          f"batch {args.batch}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print("| model | parameters | sequences/s (median) | ms/step |")
    print("|---|---:|---:|---:|")
    for kind in ("lstm", "gru", "transformer", "mamba"):
        model = build_model(ModelConfig(model_type=kind, dim=d, width=args.width, depth=args.depth, dropout=0.1))
        _train_steps(model, (ctx, target), bank, args.warmup)
        times = [_train_steps(model, (ctx, target), bank, args.steps) for _ in range(args.repeats)]
        med = statistics.median(times)
        print(f"| {kind} | {count_parameters(model):,} | {args.batch * args.steps / med:,.0f} | "
              f"{1000 * med / args.steps:.1f} |")

    model = build_model(ModelConfig(model_type="mamba", dim=d, width=args.width, depth=args.depth, dropout=0.0,
                                    residual=False))  # residual=True would hide the core behind a zero head
    results = {}
    outputs = {}
    for name, scan in (("parallel scan", selective_scan), ("loop scan", selective_scan_reference)):
        for block in model.core.blocks:
            block.scan = scan
        with torch.no_grad():
            outputs[name] = model(ctx)
        _fwd_bwd(model, ctx, args.warmup)
        results[name] = statistics.median(_fwd_bwd(model, ctx, args.steps) for _ in range(args.repeats))
    diff = (outputs["parallel scan"] - outputs["loop scan"]).abs().max().item()
    print()
    print(f"# Mamba forward+backward, T={args.context}: parallel scan vs loop scan (max |diff| {diff:.2e})")
    print("| scan | ms/step | sequences/s |")
    print("|---|---:|---:|")
    for name, secs in results.items():
        print(f"| {name} | {1000 * secs / args.steps:.1f} | {args.batch * args.steps / secs:,.0f} |")
    print(f"| ratio loop/parallel | {results['loop scan'] / results['parallel scan']:.2f}x | |")


if __name__ == "__main__":
    main()
