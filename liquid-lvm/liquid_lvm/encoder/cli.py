"""``python -m liquid_lvm.encoder``: train, evaluate and study the isotropic Gaussian encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from liquid_shared.cli_options import renamed

app = typer.Typer(help="Isotropic Gaussian retrieval encoder: a sentence-transformers base + a head trained with "
                       "InfoNCE and SIGReg (LeJEPA's Epps-Pulley regulariser).", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None)
console = Console(stderr=True)
DEFAULT_BASE = "offline:all-minilm-l6-v2"


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
    raise typer.Exit(2) from exc


def _load_pairs(source: Path, split: str):
    from liquid_lvm.encoder.pairs import pairs_from_beir, pairs_from_etl_run, pairs_from_jsonl

    if source.is_file():
        return pairs_from_jsonl(source)
    if (source / "qa_pairs.jsonl").exists() or (source / "chunks.jsonl").exists():
        return pairs_from_etl_run(source)
    if (source / "corpus.jsonl").is_file():
        return pairs_from_beir(source, split)
    raise ValueError(f"{source}: not a pairs JSONL file, an ETL run folder (qa_pairs.jsonl) or a BEIR folder")


@app.command(cls=renamed(out="--output", base="--embedding-model"))
def train(
    source: Annotated[Path, typer.Argument(help="BEIR folder (qrels/<split>.tsv), ETL run folder (generated "
                                                "questions, synthetic labels) or MS MARCO-style pairs JSONL.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder for the sentence-transformers model.")],
    base: Annotated[str, typer.Option("--embedding-model", help="Base sentence-transformers model (a standard name such as all-MiniLM-L6-v2, an alias, or a local folder).")] = DEFAULT_BASE,
    split: Annotated[str, typer.Option(help="BEIR qrels split to train on.")] = "train",
    freeze: Annotated[Literal["frozen", "last_n", "full"], typer.Option(help="frozen (head only, cached base vectors), last_n or full.")] = "frozen",
    n_unfrozen: Annotated[int, typer.Option(help="last_n: transformer layers that train.")] = 2,
    out_dim: Annotated[int | None, typer.Option(help="Head output size (default: the base's).")] = None,
    regulariser: Annotated[Literal["sigreg", "covariance", "none"], typer.Option(help="sigreg, covariance or none.")] = "sigreg",
    lam: Annotated[float, typer.Option(help="Weight of the regulariser: (1-lam) InfoNCE + lam R.")] = 0.1,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=2)] = 64,
    lr_head: Annotated[float, typer.Option()] = 1e-3,
    lr_base: Annotated[float, typer.Option()] = 2e-5,
    seed: Annotated[int, typer.Option()] = 0,
    hard_negatives: Annotated[Literal["none", "bm25"], typer.Option(help="none (in-batch negatives only) or bm25 (each pair also gets "
                                                     "the best BM25 non-positive document of the set).")] = "none",
) -> None:
    """Train the encoder (the shared loop; torchrun for DDP) and save it as a sentence-transformers folder."""
    from liquid_lvm.encoder.model import EncoderModelError, IsotropicGaussianEncoder
    from liquid_lvm.encoder.objective import ObjectiveConfig
    from liquid_lvm.encoder.pairs import PairDataError
    from liquid_lvm.encoder.training import EncoderTrainConfig, train_encoder
    from liquid_lvm.training import TrainConfig

    try:
        if hard_negatives not in ("none", "bm25"):
            raise ValueError(f"--hard-negatives must be 'none' or 'bm25', got {hard_negatives!r}")
        pairs = _load_pairs(source, split)
        if hard_negatives == "bm25":
            from liquid_lvm.encoder.pairs import with_bm25_negatives

            pairs = with_bm25_negatives(pairs)
            console.print(pairs.notes[-1])
        pairs = pairs.compact()
        enc = IsotropicGaussianEncoder(base, out_dim, freeze=freeze, n_unfrozen=n_unfrozen, seed=seed)  # type: ignore[arg-type]
        cfg = EncoderTrainConfig(lr_head=lr_head, lr_base=lr_base,
                                 objective=ObjectiveConfig(regulariser=regulariser, lam=lam, seed=seed))  # type: ignore[arg-type]
        steps = -(-len(pairs) // batch_size)
        result = train_encoder(enc, pairs, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr_head, seed=seed,
                                                       warmup_steps=steps, weight_decay=0.0), cfg)
    except (PairDataError, EncoderModelError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank ends with the same weights
        enc.save(out)
    labels = "synthetic (ETL-generated questions)" if pairs.synthetic else "given"
    console.print(f"trained on {len(pairs)} pairs ({labels} labels), {result.loop.steps} steps, "
                  f"{result.seconds_per_epoch:.2f} s/epoch ({'cached' if result.cached else 'through the base'}); "
                  f"saved to {out}")


@app.command(cls=renamed(model="--embedding-model"))
def evaluate(
    beir_dir: Annotated[Path, typer.Argument(help="BEIR folder.")],
    model: Annotated[str, typer.Option("--embedding-model", help="Saved encoder folder or any sentence-transformers model (standard names of the bundled model work offline).")] = DEFAULT_BASE,
    split: Annotated[str, typer.Option(help="qrels split.")] = "test",
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 of a model on a BEIR split (full corpus)."""
    from liquid_lvm.encoder.evaluation import evaluate_encoder, retrieval_set_from_beir
    from liquid_shared.embeddings import Embedder

    try:
        data = retrieval_set_from_beir(beir_dir, split)
        emb = Embedder(model, cache=False)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(exc)
    result = evaluate_encoder(lambda texts: emb.encode(texts, show_progress=True), data)
    table = Table(title=f"{model} on {data.name} ({len(data.queries)} queries, {len(data.doc_keys)} docs)")
    for k in result.mean:
        table.add_column(k)
    table.add_row(*(f"{v:.4f}" for v in result.mean.values()))
    Console().print(table)


@app.command(cls=renamed(out="--output"))
def study(
    beir_dir: Annotated[Path, typer.Argument(help="BEIR folder with qrels/train.tsv and qrels/test.tsv.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder for summary.json, significance CSVs, spectra.")],
    etl_run: Annotated[Path | None, typer.Option(help="ETL run over (a sample of) the corpus: the no-human-label "
                                                     "variants.")] = None,
    squad: Annotated[Path | None, typer.Option(help="SQuAD JSON: a second retrieval set.")] = None,
    corpus: Annotated[Literal["full", "judged"], typer.Option(help="full (all documents) or judged (only train/test-judged documents, "
                                             "not comparable with published numbers).")] = "full",
    epochs: Annotated[int, typer.Option(min=1)] = 15,
    seed: Annotated[int, typer.Option()] = 0,
    unfrozen_layers: Annotated[int, typer.Option(min=0, help="Also train a contrastive encoder whose last N "
                                                  "transformer layers train (through the base); 0 = none.")] = 0,
    unfrozen_epochs: Annotated[int, typer.Option(min=1, help="Epochs of that encoder (fixed, no selection).")] = 1,
) -> None:
    """Frozen-base heads (contrastive, +SIGReg at several lambda, +covariance; human vs generated labels) against
    the untrained base: per-query nDCG@10, paired t-tests with Holm, bootstrap CIs, isotropy diagnostics."""
    from liquid_lvm.encoder.study import run_study

    if corpus not in ("full", "judged"):
        _fail(ValueError(f"--corpus must be full or judged, got {corpus!r}"))
    result = run_study(beir_dir, etl_run, squad, out, corpus=corpus, epochs=epochs, seed=seed,
                       unfrozen_layers=unfrozen_layers, unfrozen_epochs=unfrozen_epochs)
    for name, df in result["tables"].items():
        Console().print(f"[bold]{name}[/bold] nDCG@10 against the untrained base (paired t, Holm)")
        Console().print(df[["system", "mean", "ci_low", "ci_high", "diff", "p_adjusted", "significant"]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"))
    for name, df in result["regulariser_vs_contrastive"].items():
        Console().print(f"[bold]{name}[/bold]: regularised against contrastive-only on SciFact (paired t, Holm)")
        Console().print(df[["system", "mean", "diff", "p_adjusted", "significant"]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"))
    Console().print(json.dumps(result["summary"]["diagnostics"], indent=1, default=float)[:4000])


@app.command("sample-corpus", cls=renamed(out="--output"))
def sample_corpus(
    beir_dir: Annotated[Path, typer.Argument(help="BEIR folder.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder to write corpus_sample.jsonl (the ETL's input).")],
    n_docs: Annotated[int, typer.Option(min=1)] = 300,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """A seeded random sample of a BEIR corpus (never chosen with qrels) as one JSONL file for the ETL."""
    from liquid_lvm.encoder.corpus_sample import write_corpus_sample

    path = write_corpus_sample(beir_dir, out, n_docs, seed)
    console.print(f"wrote {path}; run: python -m etl_pipeline.run_etl {out} --stages qa -o data/runs/<name>")
