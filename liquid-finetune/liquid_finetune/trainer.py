"""LoRA supervised fine-tuning with PEFT and TRL's ``SFTTrainer`` on chat-format JSONL.

``finetune(FinetuneConfig(...))`` reads and checks the data (``chat_data``), tokenises every
conversation with its assistant-only loss mask (``masking``), loads the base model through the
model layer's resolution (offline aliases, local folders, cached hub ids; CPU fp32 by default,
CUDA bf16 when present), and trains a LoRA adapter on the architecture's projections
(``targets``). The base weights are frozen (PEFT); only the adapter changes.

Training: TRL's ``SFTTrainer`` over the pre-tokenised dataset (TRL turns ``assistant_masks`` into
labels), AdamW, linear decay, seeded (``seed`` drives the data order, the LoRA initialisation and
dropout). With an evaluation split, the eval loss is computed every ``eval_steps``, the best
checkpoint is kept and early stopping ends training after ``early_stopping_patience`` evaluations
without improvement. Checkpoints go to ``output_dir/checkpoints``; ``resume=True`` continues from
the newest one (so a long run can be done in several commands). Metrics go to MLflow through
``liquid_shared.tracking`` (train/eval loss per step, time, memory) and a local ``history.json``.

Outputs in ``output_dir``: ``adapter/`` (PEFT format + ``liquid_adapter.json``, loadable with
``ModelSpec(model=BASE, adapter=output_dir/"adapter")``), ``merged/`` when ``merge=True`` (a plain
transformers folder with the adapter merged in), ``history.json`` and ``result.json``.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from liquid_finetune.chat_data import ChatDataError, read_chat_jsonl, split_eval
from liquid_finetune.masking import tokenize_conversation

DEFAULT_BASE = "offline:smollm2-135m-instruct"


class FinetuneConfig(BaseModel):
    """Everything one LoRA fine-tuning run depends on (also logged as the MLflow run's params)."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(description="Chat-format JSONL ({'messages': [...]} a line), e.g. an ETL run's ft/train.jsonl.")
    output_dir: Path = Field(description="Run folder: adapter/, checkpoints/, history.json, result.json.")
    base_model: str = Field(DEFAULT_BASE, description="Hub id, local folder or offline alias of the base model.")
    eval_data: Path | None = Field(None, description="Separate evaluation JSONL (default: split off the data).")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the data held out for eval loss.")
    targets: list[str] | str | None = Field(None, description="LoRA target modules; None = per architecture.")
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps (overrides epochs).")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=16, description="Tokens per example (longer ones are cut at the end).")
    eval_steps: int = Field(25, ge=1)
    logging_steps: int = Field(5, ge=1)
    early_stopping_patience: int | None = Field(3, ge=1, description="Evaluations without improvement; None = off.")
    seed: int = 0
    device: str | None = Field(None, description="'cpu', 'cuda'; None = CUDA when present, else CPU.")
    dtype: str | None = Field(None, description="None = bf16 on CUDA, fp32 on CPU.")
    merge: bool = Field(False, description="Also write merged weights (a plain transformers folder) to merged/.")
    resume: bool = Field(False, description="Continue from the newest checkpoint in output_dir/checkpoints.")
    track: bool = Field(True, description="Log to MLflow (liquid_shared.tracking).")
    experiment: str = Field("finetune", description="MLflow experiment name.")
    progress: bool = Field(True, description="Rich progress bars.")

    @field_validator("data", "eval_data")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"training data file {value} does not exist")
        return value


@dataclass
class FinetuneResult:
    adapter_dir: Path
    merged_dir: Path | None
    n_train: int
    n_eval: int
    steps: int
    trainable_params: int
    total_params: int
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    best_eval_loss: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    model: Any = field(default=None, repr=False, compare=False)  # the trained PEFT model, in memory

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        out["adapter_dir"] = str(self.adapter_dir)
        out["merged_dir"] = str(self.merged_dir) if self.merged_dir else None
        return out


def load_base(config: FinetuneConfig) -> tuple[Any, Any, Any]:
    """Base model (fresh, not the registry's shared copy: training wraps it), tokenizer, placement."""
    from liquid_shared.models.loading import load_model_and_tokenizer
    from liquid_shared.models.spec import ModelSpec

    spec = ModelSpec(model=config.base_model, device=config.device, dtype=config.dtype)
    model, tokenizer, placement = load_model_and_tokenizer(spec)
    tokenizer.padding_side = "right"  # training pads on the right; the registry's copy pads left
    model.config.use_cache = False
    return model, tokenizer, placement


def tokenized_dataset(tokenizer: Any, conversations: list, name: str):
    from datasets import Dataset

    rows = [tokenize_conversation(tokenizer, c) for c in conversations]
    if not rows:
        raise ChatDataError(f"the {name} set is empty")
    return Dataset.from_list(rows)


def export_merged(config: FinetuneConfig, adapter_dir: Path, folder: Path) -> Path:
    """A plain transformers folder with the adapter merged in (a fresh base copy; the trained one is kept)."""
    from liquid_shared.models.adapters import apply_adapter

    base, tokenizer, _ = load_base(config)
    merged = apply_adapter(base, adapter_dir, base_name=config.base_model)
    merged.config.use_cache = True
    merged.save_pretrained(str(folder))
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(folder))
    return folder


def _history(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e]
    return train, evals


def _newest_checkpoint(folder: Path) -> str | None:
    points = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(points[-1]) if points else None


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Train a LoRA adapter as ``config`` says; see the module docstring for what is written."""
    import contextlib

    import torch
    from peft import LoraConfig
    from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    from liquid_finetune.targets import lora_targets
    from liquid_finetune.tracking_callback import TrackingCallback
    from liquid_shared.models.adapters import write_adapter_meta

    conversations = read_chat_jsonl(config.data)
    if config.eval_data is not None:
        train_convs, eval_convs = conversations, read_chat_jsonl(config.eval_data)
    else:
        train_convs, eval_convs = split_eval(conversations, config.eval_fraction, config.seed)

    torch.manual_seed(config.seed)
    model, tokenizer, placement = load_base(config)
    train_ds = tokenized_dataset(tokenizer, train_convs, f"training ({config.data})")
    eval_ds = tokenized_dataset(tokenizer, eval_convs, "evaluation") if eval_convs else None

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    on_cuda = placement.device.type == "cuda"
    use_bf16 = on_cuda and placement.dtype == torch.bfloat16
    has_eval = eval_ds is not None
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        seed=config.seed,
        data_seed=config.seed,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        truncation_mode="keep_start",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps if has_eval else None,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=has_eval,
        metric_for_best_model="eval_loss" if has_eval else None,
        greater_is_better=False if has_eval else None,
        report_to="none",
        use_cpu=not on_cuda,
        bf16=use_bf16,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
        remove_unused_columns=True,
    )
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules=lora_targets(model, config.targets), task_type="CAUSAL_LM", bias="none")
    callbacks: list[Any] = []
    if has_eval and config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    if config.progress:
        from trl.trainer.callbacks import RichProgressCallback

        callbacks.append(RichProgressCallback())

    run_ctx = contextlib.nullcontext(None)
    if config.track:
        from liquid_shared.tracking import start_run

        run_ctx = start_run(config.experiment, run_name=out.name,
                            params={**config.model_dump(mode="json"), "n_train": len(train_convs),
                                    "n_eval": len(eval_convs)},
                            tags={"component": "liquid_finetune"})
    with run_ctx as run:
        if run is not None:
            callbacks.append(TrackingCallback(run))
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
        for quiet in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(quiet)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in trainer.model.parameters())
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(placement.device)
        resume_from = _newest_checkpoint(out / "checkpoints") if config.resume else None
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        seconds = time.perf_counter() - start

        adapter_dir = out / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        write_adapter_meta(adapter_dir, config.base_model, trainer.model.get_base_model().config,
                           {"lora_targets": peft_config.target_modules and sorted(peft_config.target_modules),
                            "seed": config.seed, "data": str(config.data)})
        merged_dir = None
        if config.merge:
            merged_dir = export_merged(config, adapter_dir, out / "merged")

        train_loss, eval_loss = _history(trainer.state.log_history)
        state = trainer.state
        result = FinetuneResult(
            adapter_dir=adapter_dir, merged_dir=merged_dir, n_train=len(train_convs), n_eval=len(eval_convs),
            steps=int(state.global_step), trainable_params=int(trainable), total_params=int(total),
            train_loss=train_loss, eval_loss=eval_loss,
            best_eval_loss=float(state.best_metric) if state.best_metric is not None else None,
            stopped_early=bool(state.max_steps and state.global_step < state.max_steps),
            seconds=seconds, peak_rss_bytes=_peak_rss_bytes(),
            peak_cuda_bytes=int(torch.cuda.max_memory_allocated(placement.device)) if on_cuda else None,
            device=str(placement.device), dtype=str(placement.dtype).removeprefix("torch."),
            model=trainer.model,
        )
        (out / "history.json").write_text(json.dumps(state.log_history, indent=1), encoding="utf-8")
        (out / "result.json").write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
        if run is not None:
            run.log_metrics({"train_seconds": seconds, "peak_rss_gib": result.peak_rss_bytes / 2**30,
                             "steps": result.steps, "trainable_params": trainable})
            run.log_artifact(out / "result.json")
    return result
