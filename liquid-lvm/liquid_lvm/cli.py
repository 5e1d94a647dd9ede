"""``python -m liquid_lvm``: prepare a corpus, train a next-chunk model, evaluate it.

    python -m liquid_lvm prepare $LIQUID_DATA_DIR/wikipedia/articles.jsonl -o data/lvm/wiki
    python -m liquid_lvm train data/lvm/wiki --model-type gru -o data/lvm/gru
    python -m liquid_lvm evaluate data/lvm/wiki -c data/lvm/gru/best.pt --rollout 3

Sub-apps of other parts of the package join with one line: ``app.add_typer(sub_app, name=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from liquid_shared.cli_options import renamed

app = typer.Typer(help="Next-chunk vector models (LVM): prepare ordered documents as embedding windows, train "
                       "LSTM/GRU/Transformer/Mamba predictors with the shared loop, evaluate them over the whole "
                       "test bank against baselines.", no_args_is_help=True, add_completion=False, rich_markup_mode=None)
console = Console()


def _add_encoder_app() -> None:
    from liquid_lvm.encoder.cli import app as encoder_app

    app.add_typer(encoder_app, name="encoder", help="The isotropic Gaussian retrieval encoder (also python -m liquid_lvm.encoder).")


_add_encoder_app()


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--fractions must be three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3:
        raise typer.BadParameter(f"--fractions must be three numbers like 0.8,0.1,0.1, got {text!r}")
    return parts  # type: ignore[return-value]


def _parse_weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise typer.BadParameter(f"--loss takes name=weight pairs like infonce=1,mse=0.5, got {text!r}") from None
    return out


@app.command(cls=renamed(out="--output", model="--embedding-model"))
def prepare(
    source: Annotated[Path, typer.Argument(help="JSONL of documents with ordered paragraphs, an ETL run folder "
                                                "(chunks.jsonl) or a SQuAD JSON file.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder for vectors.safetensors and corpus.json.")],
    context: Annotated[int, typer.Option(help="Context length T (chunks read before the predicted one).")] = 8,
    stride: Annotated[int, typer.Option(help="Step between window starts.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the document split.")] = 0,
    fractions: Annotated[str, typer.Option(help="Train,val,test shares of the DOCUMENTS.")] = "0.8,0.1,0.1",
    model: Annotated[str | None, typer.Option("--embedding-model", help="sentence-transformers model (default: offline "
                                                   "all-MiniLM-L6-v2).")] = None,
    max_documents: Annotated[int | None, typer.Option(help="Use only the first N documents.")] = None,
    test_only: Annotated[bool, typer.Option(help="Every document in the test split (out-of-domain set).")] = False,
    exclude_sections: Annotated[str, typer.Option(help="Comma-separated sections whose paragraphs are dropped "
                                                       "(JSONL paragraphs with a 'section'); 'back-matter' = "
                                                       "References, External links, See also, Notes, ...")] = "",
) -> None:
    """Embed ordered documents (cached on disk), split them by document, cut windows; print counts."""
    from liquid_lvm.data import REFERENCE_SECTIONS, load_documents, prepare_corpus, save_corpus

    sections = [s.strip() for s in exclude_sections.split(",") if s.strip()]
    if [s.lower() for s in sections] == ["back-matter"]:
        sections = list(REFERENCE_SECTIONS)
    docs, report = load_documents(source, exclude_sections=sections)
    if sections:
        console.print(f"excluded {report.excluded_chunks} paragraphs of sections {sections}")
    docs = docs[:max_documents] if max_documents else docs
    console.print(f"{len(docs)} documents from {source} ({report.kind}); {len(report.skipped)} skipped")
    for where, why in list(report.skipped.items())[:5]:
        console.print(f"  [yellow]skipped {where}: {why}[/yellow]")
    corpus = prepare_corpus(docs, context=context, stride=stride, seed=seed, fractions=_parse_fractions(fractions),
                            model=model, show_progress=True, test_only=test_only)
    save_corpus(corpus, out)
    table = Table("split", "documents", "chunks", "windows", "skipped (< T+1 chunks)",
                  title=f"{out} (T={context}, {corpus.model})")
    for split, c in corpus.counts().items():
        table.add_row(split, str(c["documents"]), str(c["chunks"]), str(c["windows"]), str(c["skipped_short_documents"]))
    console.print(table)


@app.command("train", cls=renamed(out="--output"))
def train_cmd(
    corpus_dir: Annotated[Path, typer.Argument(help="A folder made by `prepare`.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder (best.pt, last.pt, history.json).")],
    model_type: Annotated[Literal["lstm", "gru", "transformer", "mamba"], typer.Option(help="Next-vector model.")] = "gru",
    width: Annotated[int, typer.Option(help="Hidden width.")] = 256,
    depth: Annotated[int, typer.Option(help="Layers / blocks.")] = 2,
    dropout: Annotated[float, typer.Option(help="Dropout.")] = 0.1,
    loss: Annotated[str, typer.Option(help="Loss mixture, name=weight: mse, cosine, infonce.")] = "infonce=1",
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature.")] = 0.05,
    bank_size: Annotated[int, typer.Option(help="InfoNCE extra negatives per step from the training chunks.")] = 1024,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps at most.")] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    eval_every: Annotated[int, typer.Option(help="Validate (val Recall@10) every N steps.")] = 200,
    patience: Annotated[int | None, typer.Option(help="Early stopping after N validations without gain.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "lvm_train",
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log the run to MLflow.")] = False,
) -> None:
    """Train one model with the shared loop; the best checkpoint by validation Recall@10 is kept.

    Under `torchrun --nproc_per_node=N -m liquid_lvm train ...` it runs DDP (gloo on CPU, nccl on
    CUDA; --batch-size stays the global batch); only rank 0 validates, logs to MLflow and writes.
    """
    import contextlib

    from liquid_lvm.data import load_corpus
    from liquid_lvm.models import ModelConfig
    from liquid_lvm.pipeline import fit_model
    from liquid_lvm.training import TrainConfig
    from liquid_lvm.training.losses import LossConfig
    from liquid_shared.tracking import start_run

    corpus = load_corpus(corpus_dir)
    mc = ModelConfig(model_type=model_type, dim=corpus.dim, width=width, depth=depth, dropout=dropout)
    tc = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, eval_every=eval_every,
                     patience=patience, seed=seed, val_metric="recall@10", val_mode="max")
    lc = LossConfig(weights=_parse_weights(loss), temperature=temperature, bank_size=bank_size)
    from liquid_lvm.training.distributed import init_distributed

    dist_info = init_distributed()
    tracking = (start_run(experiment, run_name=f"{model_type}-w{width}-d{depth}",
                          params={"model": mc.model_dump(), "loss": lc.model_dump(), "corpus": str(corpus_dir),
                                  "world_size": dist_info.world_size})
                if dist_info.is_main and not no_track else contextlib.nullcontext())
    with tracking as run:
        model, result = fit_model(corpus, mc, tc, lc, checkpoint_dir=out, run=run, resume=resume)
    if not dist_info.is_main:
        return
    from liquid_lvm.training import count_parameters

    (out / "history.json").write_text(json.dumps(result.history, indent=1))
    console.print(f"{model_type}: {count_parameters(model):,} parameters, {result.steps} steps, best val "
                  f"recall@10 {result.best_metric} at step {result.best_step}, "
                  f"{result.sequences_per_second:.0f} sequences/s -> {out / 'best.pt'}")


@app.command(cls=renamed(out="--output"))
def evaluate(
    corpus_dir: Annotated[Path, typer.Argument(help="A folder made by `prepare` (its test split is judged).")],
    checkpoint: Annotated[list[Path] | None, typer.Option("--checkpoint", "-c", help="Model checkpoints "
                                                          "(repeatable).")] = None,
    baselines_from: Annotated[Path | None, typer.Option(help="Corpus whose train/val splits fit the baselines "
                                                             "(default: CORPUS_DIR itself).")] = None,
    split: Annotated[str, typer.Option(help="Split to judge.")] = "test",
    rollout: Annotated[int, typer.Option(help="Rollout steps.")] = 3,
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write per-query CSVs and tables here.")] = None,
) -> None:
    """Every checkpoint and the four baselines on one split: whole-bank retrieval, cosine,
    direction, rollout; bootstrap CIs and paired tests (Holm) against the best baseline."""
    from liquid_lvm.data import load_corpus
    from liquid_lvm.evaluation import (
        BASELINES,
        ModelPredictor,
        best_system,
        compare_with_baseline,
        evaluate_predictor,
    )
    from liquid_lvm.models import load_model
    from liquid_lvm.pipeline import fit_baselines

    corpus = load_corpus(corpus_dir)
    systems = fit_baselines(load_corpus(baselines_from) if baselines_from else corpus)
    for path in checkpoint or []:
        model = load_model(path)
        if model.config.dim != corpus.dim:
            raise typer.BadParameter(f"checkpoint {path} predicts {model.config.dim}-d vectors, corpus {corpus_dir} "
                                     f"has {corpus.dim}-d embeddings")
        systems[f"{model.config.model_type}:{path.parent.name}"] = ModelPredictor(model)
    results = {name: evaluate_predictor(p, corpus, split, rollout=rollout) for name, p in systems.items()}
    table = Table("system", *[f"{m}@{s}" for s in range(1, rollout + 1) for m in ("R@10", "MRR")], "cos", "dir",
                  "contr.acc", title=f"{corpus_dir} {split} (bank {len(corpus.rows(split))} chunks)")
    for name, ev in results.items():
        cells = []
        for s in range(1, rollout + 1):
            sm = ev.summary(s)
            cells += [f"{sm['recall@10']:.3f}", f"{sm['mrr']:.3f}"]
        sm = ev.summary()
        table.add_row(name, *cells, f"{sm['cosine']:.3f}", f"{sm['directional']:.3f}", f"{sm['contrastive_acc']:.3f}")
    console.print(table)
    base = best_system(results, list(BASELINES))
    cmp = compare_with_baseline(results, base)
    console.print(f"against the best baseline ({base}) on recall@10 (paired permutation test, Holm):")
    console.print(cmp[["system", "mean", "ci_low", "ci_high", "diff", "p_adjusted", "significant"]].to_string(
        index=False))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        for name, ev in results.items():
            ev.per_query.to_csv(out / f"per_query_{name.replace(':', '_')}.csv", index=False)
        cmp.to_csv(out / "comparison.csv", index=False)


def main() -> None:
    app()
