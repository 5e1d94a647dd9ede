"""The one training loop of liquid_lvm (the next-chunk models and the encoder's head use it).

    result = train(model, loss_fn, train_data, TrainConfig(lr=1e-3), validate=validate,
                   checkpoint_dir=Path("ckpt"), run=tracked_run)

* ``loss_fn(model, batch)`` returns the scalar loss (or ``(loss, {name: float})``). It must call
  ``model(...)`` (the forward of the module it gets), so that DDP synchronises the gradients.
* ``train_data`` is a ``Dataset`` (the loop builds the loader: a ``DistributedSampler`` with the
  seed, so one process and N ranks see the same global batches) or a ready ``DataLoader``.
* ``validate(model)`` (rank 0, eval mode, no grad) returns metrics; ``config.val_metric`` of them
  picks the best checkpoint and drives early stopping.
* AdamW with two parameter groups (decay for matrices, none for biases and norm gains), linear
  warm-up plus cosine decay stepped per optimiser step, gradient clipping, mixed precision on
  CUDA, checkpoints ``best.pt`` and ``last.pt`` (``resume=True`` continues from ``last.pt``).
* Under ``torchrun`` the model is wrapped in ``DistributedDataParallel``; only rank 0 validates,
  logs (rich progress, MLflow via ``liquid_shared.tracking``) and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from liquid_lvm.training.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from liquid_lvm.training.config import TrainConfig
from liquid_lvm.training.distributed import DistInfo, barrier, broadcast_flag, init_distributed
from liquid_lvm.training.schedule import warmup_cosine

LossFn = Callable[[nn.Module, Any], "torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]"]
Validate = Callable[[nn.Module], Mapping[str, float]]


@dataclass
class TrainResult:
    steps: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)  # one row per log/validation
    best_checkpoint: Path | None = None
    seconds: float = 0.0
    sequences_seen: int = 0

    @property
    def sequences_per_second(self) -> float:
        return self.sequences_seen / self.seconds if self.seconds > 0 else float("nan")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay for parameters of two or more dimensions (weights), none for biases and norm gains.

    A model with an ``optimizer_groups(weight_decay)`` method gives its own groups instead (e.g. a
    learning rate per part: the encoder's base and head); a group without ``lr`` gets ``config.lr``.
    """
    own = getattr(model, "optimizer_groups", None)
    if callable(own):
        return own(weight_decay)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _loader(data: Dataset | DataLoader, config: TrainConfig, info: DistInfo) -> tuple[Iterable, Any]:
    if isinstance(data, DataLoader):
        return data, getattr(data, "sampler", None)
    if config.batch_size % info.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {info.world_size} ranks")
    if len(data) == 0:  # type: ignore[arg-type]
        raise ValueError("the training dataset is empty")
    sampler = DistributedSampler(data, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    loader = DataLoader(data, batch_size=config.batch_size // info.world_size, sampler=sampler,
                        num_workers=config.num_workers, drop_last=False)
    return loader, sampler


def _split_loss(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        loss, logs = out
        return loss, {k: float(v) for k, v in logs.items()}
    return out, {}


def _better(value: float, best: float | None, config: TrainConfig) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - config.min_delta if config.val_mode == "min" else value > best + config.min_delta


def _progress(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]train[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    return 0


def train(model: nn.Module, loss_fn: LossFn, train_data: Dataset | DataLoader, config: TrainConfig | None = None,
          *, validate: Validate | None = None, checkpoint_dir: Path | None = None,
          checkpoint_meta: Mapping[str, Any] | None = None, run: Any = None, resume: bool = False) -> TrainResult:
    """Train ``model`` in place and return what happened (see the module docstring).

    ``run`` is an open ``liquid_shared.tracking`` run (params, curves and the best checkpoint are
    logged to it from rank 0); ``checkpoint_meta`` is stored in every checkpoint.
    """
    config = config or TrainConfig()
    info = init_distributed(config.device)
    seed_everything(config.seed)
    model.to(info.device)
    loader, sampler = _loader(train_data, config, info)
    steps_per_epoch = max(1, math.ceil(len(loader) / config.grad_accum_steps))  # type: ignore[arg-type]
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  fused=False)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, config.warmup_steps, config.min_lr_ratio))
    use_amp = config.amp and info.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    meta = dict(checkpoint_meta or {})

    step, best, best_step, history = 0, None, None, []
    bad_evals, start_epoch = 0, 0
    if resume and checkpoint_dir is not None and (checkpoint_dir / LAST).is_file():
        state = load_checkpoint(checkpoint_dir / LAST, {k: v for k, v in meta.items() if k == "model_type"})
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best, best_step = state["step"], state.get("best"), state.get("best_step")
        history, bad_evals = state.get("history", []), state.get("bad_evals", 0)
        start_epoch = step // steps_per_epoch
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[info.device.index] if info.device.type == "cuda" else None) if info.enabled else model

    if info.is_main and run is not None:
        run.log_params({"train": config.model_dump(mode="json"), "n_parameters": count_parameters(model),
                        "world_size": info.world_size, "total_steps": total_steps, **{"meta": meta}})

    def save(name: str, metrics: Mapping[str, float]) -> Path | None:
        if checkpoint_dir is None or not info.is_main:
            return None
        return save_checkpoint(checkpoint_dir / name, model=_unwrap(ddp).state_dict(),
                               optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), step=step,
                               best=best, best_step=best_step, history=history, bad_evals=bad_evals,
                               metrics=dict(metrics), meta=meta)

    best_state: dict[str, torch.Tensor] | None = None

    def evaluate_now() -> bool:
        """Validate on rank 0; True when early stopping says stop (same answer on every rank)."""
        nonlocal best, best_step, bad_evals, best_state
        stop = False
        if info.is_main and validate is not None:
            inner = _unwrap(ddp)
            inner.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in validate(inner).items()}
            inner.train()
            if config.val_metric not in metrics:
                raise KeyError(f"validate() returned {sorted(metrics)}, without val_metric {config.val_metric!r}")
            history.append({"step": step, **{f"val_{k}": v for k, v in metrics.items()}})
            if run is not None:
                run.log_metrics({f"val_{k}": v for k, v in metrics.items()}, step=step)
            if _better(metrics[config.val_metric], best, config):
                best, best_step, bad_evals = metrics[config.val_metric], step, 0
                best_state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
                save(BEST, metrics)
            else:
                bad_evals += 1
                stop = config.patience is not None and bad_evals >= config.patience
            save(LAST, metrics)
        return broadcast_flag(stop, info)

    t0 = time.perf_counter()
    seen, stopped = 0, False
    ddp.train()
    with _progress(config.progress and info.is_main, total_steps) as progress:
        task = progress.add_task("", total=total_steps, completed=step) if progress is not None else None
        epoch = start_epoch
        while step < total_steps and not stopped:
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            micro = 0
            for batch in loader:
                batch = to_device(batch, info.device)
                sync = (micro + 1) % config.grad_accum_steps == 0
                ctx = ddp.no_sync() if info.enabled and not sync else contextlib.nullcontext()
                with ctx:
                    with torch.autocast(info.device.type, dtype=amp_dtype, enabled=use_amp):
                        loss, logs = _split_loss(loss_fn(ddp, batch))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower lr or check the data")
                    scaler.scale(loss / config.grad_accum_steps).backward()
                seen += _batch_size(batch) * info.world_size
                micro += 1
                if not sync:
                    continue
                scaler.unscale_(optimizer)
                grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                             if config.grad_clip else None)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                if info.is_main and (step % config.log_every == 0 or step == total_steps):
                    row = {"step": step, "train_loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                           **logs}
                    if grad_norm is not None:
                        row["grad_norm"] = float(grad_norm)
                    history.append(row)
                    if run is not None:
                        run.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
                if task is not None:
                    progress.update(task, advance=1, description=f"loss {float(loss.detach()):.4f}")
                if step % config.eval_every == 0 or step == total_steps:
                    stopped = evaluate_now()
                if stopped or step >= total_steps:
                    break
            epoch += 1
    seconds = time.perf_counter() - t0
    if validate is None:
        save(LAST, {})
    barrier(info)
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if info.enabled:  # every rank ends with rank 0's chosen weights
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)
    best_path = checkpoint_dir / BEST if checkpoint_dir is not None and (checkpoint_dir / BEST).is_file() else None
    if info.is_main and run is not None:
        run.log_metrics({"train_seconds": seconds, "sequences_per_second": seen / seconds if seconds else 0.0,
                         "best_step": float(best_step or 0), "stopped_early": float(stopped)})
        if best_path is not None:
            run.log_artifact(best_path, "checkpoints")
    return TrainResult(steps=step, best_metric=best, best_step=best_step, stopped_early=stopped, history=history,
                       best_checkpoint=best_path, seconds=seconds, sequences_seen=seen)
