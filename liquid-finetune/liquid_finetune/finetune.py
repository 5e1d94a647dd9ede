"""``python -m liquid_finetune.finetune DATA -o OUT``: LoRA fine-tuning on chat-format JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from liquid_finetune.trainer import DEFAULT_BASE
from liquid_shared.cli_options import renamed

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
console = Console(stderr=True)


@app.command(cls=renamed(base_model="--llm"), epilog="Exit codes: 0 = trained and saved; 1 = bad input (file, line and problem are named) "
                    "or a model that cannot load. Serve the result with ModelSpec(model=BASE, adapter=OUT/adapter).")
def main(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Chat-format JSONL, one {'messages': [...]} a line "
                                "(an ETL run's ft/train.jsonl).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder: adapter/, checkpoints/, result.json.")],
    base_model: Annotated[str, typer.Option("--llm", help="The LLM to tune: a hub id, a local folder, an offline alias or a bundled model's standard name.")] = DEFAULT_BASE,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Separate evaluation JSONL (default: a split).")] = None,
    eval_fraction: Annotated[float, typer.Option(help="Share of DATA held out for the eval loss (0 = none).")] = 0.1,
    targets: Annotated[str | None, typer.Option(help="Comma-separated LoRA target modules, or 'all-linear' "
                                       "(default: attention projections; LFM2 also its conv in/out projections).")] = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha (scale = alpha / r).")] = 16,
    lora_dropout: Annotated[float, typer.Option(help="Dropout on the LoRA input.")] = 0.05,
    learning_rate: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, linear decay).")] = 2e-4,
    epochs: Annotated[float, typer.Option(help="Passes over the training set.")] = 2.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimiser steps (overrides --epochs).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per device step.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[int, typer.Option(help="Tokens per example; longer ones are cut at the end.")] = 1024,
    eval_steps: Annotated[int, typer.Option(help="Evaluate (and checkpoint) every N steps.")] = 25,
    patience: Annotated[int | None, typer.Option(help="Early stopping: evaluations without improvement (0 = off).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the split, data order, LoRA init and dropout.")] = 0,
    device: Annotated[Literal["cpu", "cuda"] | None, typer.Option(help="cpu or cuda (default: CUDA when present).")] = None,
    dtype: Annotated[Literal["fp32", "bf16"] | None, typer.Option(help="fp32 or bf16 (default: bf16 on CUDA, fp32 on CPU).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Also write merged weights to OUT/merged.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in OUT.")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "finetune",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bars.")] = False,
) -> None:
    """LoRA supervised fine-tuning (PEFT + TRL's SFTTrainer) with the loss on assistant tokens only.

    The base model stays frozen; the adapter is saved in PEFT's format to OUT/adapter and can be
    served by the model registry with ModelSpec(model=BASE, adapter="OUT/adapter"). With an eval
    split, the best checkpoint by eval loss is kept and training stops early when it stops
    improving. Metrics go to MLflow (the project's tracking store) unless --no-track.
    """
    from pydantic import ValidationError

    from liquid_finetune.chat_data import ChatDataError
    from liquid_finetune.masking import TemplateMaskError
    from liquid_finetune.trainer import FinetuneConfig, finetune
    from liquid_shared.models.errors import ModelLoadError

    target_list: list[str] | str | None = None
    if targets:
        target_list = "all-linear" if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    try:
        config = FinetuneConfig(
            data=data, output_dir=output, base_model=base_model, eval_data=eval_data, eval_fraction=eval_fraction,
            targets=target_list, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
            learning_rate=learning_rate, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
            grad_accum=grad_accum, max_length=max_length, eval_steps=eval_steps,
            early_stopping_patience=patience or None, seed=seed, device=device, dtype=dtype, merge=merge,
            resume=resume, track=not no_track, experiment=experiment, progress=not quiet)
        result = finetune(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        console.print(f"[red]bad option {'.'.join(map(str, first['loc']))}: {first['msg']}[/red]")
        raise typer.Exit(1) from None
    except (ChatDataError, TemplateMaskError, ModelLoadError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    last = result.train_loss[-1][1] if result.train_loss else float("nan")
    console.print(f"[green]adapter saved to {result.adapter_dir}[/green]: {result.steps} steps on {result.n_train} "
                  f"examples in {result.seconds:.1f} s, last train loss {last:.4f}, best eval loss "
                  f"{result.best_eval_loss if result.best_eval_loss is not None else 'n/a'}, "
                  f"peak RSS {result.peak_rss_bytes / 2**30:.2f} GiB, {result.trainable_params:,} trainable of "
                  f"{result.total_params:,} parameters")
    if result.merged_dir:
        console.print(f"merged weights: {result.merged_dir}")


if __name__ == "__main__":
    app()
