"""lvm_next_chunk: can a model of chunk-embedding sequences predict the next chunk better than
simple baselines, judged over the whole test bank of document-disjoint test articles?

Steps: prepare (ordered documents -> cached MiniLM embeddings, document-disjoint seeded splits,
windows that never cross a document) -> coherence diagnostics per split -> the four baselines
(copy-last, context mean, ridge with its penalty chosen on validation, successor from the
training chunks) -> every model trained with the shared loop (best checkpoint by VALIDATION
Recall@10) -> every system on the test split: Recall@1/5/10 and MRR over the whole test bank
(FAISS), LCM contrastive accuracy, cosine, directional accuracy, rollout to ``rollout`` steps ->
paired permutation tests (Holm) of every system against the best baseline (by test Recall@10)
on Recall@10 and MRR -> optionally the best model (by validation Recall@10) on an out-of-domain
document set against the same baselines.

Writes ``metrics.csv`` (system x step), ``comparison.csv``, ``per_query/<system>.csv``,
``decoded_examples.csv``, ``diagnostics.json``, plots (loss curves, Recall@10 vs rollout step)
and ``report.md``, to the run folder and MLflow. Labels (the next chunk) come from document order,
not from any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register


class LvmModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Name in the tables.")
    model_type: Literal["lstm", "gru", "transformer", "mamba"] = Field(description="Sequence core.")
    width: int = Field(256, ge=4, description="Hidden width.")
    depth: int = Field(2, ge=1, description="Layers / blocks.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout.")
    loss: dict[Literal["mse", "cosine", "infonce"], float] = Field(
        default_factory=lambda: {"infonce": 1.0}, description="Loss mixture {name: weight}.")
    temperature: float = Field(0.05, gt=0, description="InfoNCE temperature.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW, warm-up + cosine).")
    residual: bool = Field(True, description="Predict last context vector + a learned change (starts at copy-last).")


DEFAULT_MODELS = [LvmModelSpec(name=t, model_type=t) for t in ("lstm", "gru", "transformer", "mamba")]


def _default_documents() -> Path:
    import os

    from liquid_shared.config import get_settings

    root = os.environ.get("LIQUID_DATA_DIR")
    return Path(root) / "wikipedia" / "articles.jsonl" if root else get_settings().cache_dir / "missing"


class LvmNextChunkConfig(ExperimentConfig):
    documents: Path | None = Field(None, description="Ordered documents (JSONL, ETL run folder or SQuAD JSON); "
                                                     "None = $LIQUID_DATA_DIR/wikipedia/articles.jsonl.")
    max_documents: int | None = Field(None, ge=3, description="Use the first N documents only.")
    exclude_sections: list[str] = Field(default_factory=list, description="Drop the paragraphs of these sections "
                                        "(JSONL paragraphs with a 'section'), e.g. the back-matter "
                                        "liquid_lvm.data.REFERENCE_SECTIONS; [] keeps every paragraph.")
    context: int = Field(8, ge=1, description="Context length T.")
    stride: int = Field(1, ge=1, description="Step between window starts.")
    fractions: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="Train, val, test shares of the "
                                                  "documents (split by document with the seed).")
    models: list[LvmModelSpec] = Field(default_factory=lambda: [m.model_copy() for m in DEFAULT_MODELS],
                                       description="Models to train: {name, model_type, width, depth, dropout, "
                                                   "loss, temperature, lr, residual}.")
    epochs: int = Field(10, ge=1, description="Epochs at most per model.")
    max_steps: int | None = Field(None, ge=1, description="Optimiser steps at most per model (None = epochs).")
    batch_size: int = Field(128, ge=2, description="Global batch size.")
    bank_size: int = Field(1024, ge=0, description="InfoNCE negatives per step from the training chunks.")
    eval_every: int = Field(100, ge=1, description="Validate (val Recall@10, whole val bank) every N steps.")
    patience: int | None = Field(4, ge=1, description="Early stopping after N validations without gain.")
    rollout: int = Field(3, ge=1, le=10, description="Rollout steps (predictions fed back as context).")
    ood_documents: Path | None = Field(None, description="Out-of-domain documents for the best model "
                                                         "(e.g. $LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json).")
    n_boot: int = Field(2000, ge=100, description="Bootstrap resamples for the CIs.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level after Holm correction.")
    checkpoint_dir: Path | None = Field(None, description="Where checkpoints go (reused with resume); None = the "
                                                          "run folder.")
    resume: bool = Field(True, description="Continue a model from its last.pt in checkpoint_dir when present.")


def _plot_curves(histories: dict[str, list[dict[str, float]]], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    drawn = False
    for name, hist in histories.items():
        tr = [(h["step"], h["train_loss"]) for h in hist if "train_loss" in h]
        va = [(h["step"], h["val_recall@10"]) for h in hist if "val_recall@10" in h]
        if tr:
            ax1.plot(*zip(*tr, strict=True), label=name)
            drawn = True
        if va:
            ax2.plot(*zip(*va, strict=True), marker="o", label=name)
    if not drawn:
        raise ValueError("no training history to plot")
    ax1.set(title="training loss", xlabel="optimiser step")
    ax2.set(title="validation Recall@10 (whole val bank)", xlabel="optimiser step")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _plot_rollout(table, path: Path, metric: str = "recall@10") -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, rows in table.groupby("system", sort=False):
        ax.plot(rows["step"], rows[metric], marker="o", label=name)
    ax.set(title=f"{metric} vs rollout step (test)", xlabel="steps ahead", ylabel=metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _by_system(frame) -> dict[str, dict[str, float]]:
    cols = ["recall@1", "recall@5", "recall@10", "mrr", "contrastive_acc", "cosine", "directional", "n_queries"]
    return {r["system"]: {c: float(r[c]) for c in cols} for _, r in frame.iterrows()}


@register("lvm_next_chunk", LvmNextChunkConfig,
          "Next-chunk vector models (LSTM, GRU, Transformer, Mamba) vs copy-last/mean/ridge/successor baselines "
          "over the whole test bank of document-disjoint articles, with rollout and paired tests.")
def run(config: LvmNextChunkConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.tables import metrics_table
    from liquid_lvm.data import load_documents, prepare_corpus
    from liquid_lvm.evaluation import (
        BASELINES,
        ModelPredictor,
        best_system,
        coherence_diagnostics,
        compare_with_baseline,
        evaluate_predictor,
    )
    from liquid_lvm.models import ModelConfig
    from liquid_lvm.pipeline import fit_baselines, fit_model
    from liquid_lvm.training import TrainConfig, count_parameters
    from liquid_lvm.training.losses import LossConfig
    from liquid_shared.reporting import comparison_table

    source = config.documents or _default_documents()
    docs, report = load_documents(source, exclude_sections=config.exclude_sections)
    docs = docs[:config.max_documents] if config.max_documents else docs
    corpus = prepare_corpus(docs, context=config.context, stride=config.stride, seed=config.seed,
                            fractions=config.fractions, show_progress=True)
    counts = corpus.counts()
    ctx.console.print(f"corpus {source}: {counts}")
    if config.exclude_sections:
        ctx.console.print(f"excluded {report.excluded_chunks} paragraphs of sections {config.exclude_sections}")
    ctx.write_json("corpus_counts.json", {"source": str(source), "skipped_lines": report.skipped, "splits": counts,
                                          "exclude_sections": config.exclude_sections,
                                          "excluded_paragraphs": report.excluded_chunks,
                                          "model": corpus.model, "context": corpus.context})
    ctx.write_json("diagnostics.json", coherence_diagnostics(corpus, config.seed))

    systems: dict[str, Any] = dict(fit_baselines(corpus))
    histories, params, val_scores = {}, {}, {}
    ckpt_root = config.checkpoint_dir or ctx.path("checkpoints")
    for spec in config.models:
        mc = ModelConfig(model_type=spec.model_type, dim=corpus.dim, width=spec.width, depth=spec.depth,
                         dropout=spec.dropout, residual=spec.residual)
        tc = TrainConfig(epochs=config.epochs, max_steps=config.max_steps, batch_size=config.batch_size, lr=spec.lr,
                         eval_every=config.eval_every, patience=config.patience, seed=config.seed,
                         val_metric="recall@10", val_mode="max", log_every=10)
        lc = LossConfig(weights=spec.loss, temperature=spec.temperature, bank_size=config.bank_size)
        with ctx.variant_run(spec.name, params={"model": mc.model_dump(), "loss": lc.model_dump()}) as child:
            model, result = fit_model(corpus, mc, tc, lc, checkpoint_dir=Path(ckpt_root) / spec.name, run=child,
                                      resume=config.resume)
        histories[spec.name] = result.history
        params[spec.name] = count_parameters(model)
        val_scores[spec.name] = result.best_metric
        systems[spec.name] = ModelPredictor(model)
        ctx.console.print(f"{spec.name}: {params[spec.name]:,} parameters, best val recall@10 {result.best_metric} "
                          f"at step {result.best_step} ({result.sequences_per_second:.0f} seq/s)")

    with ctx.progress() as progress:
        task = progress.add_task("evaluate", total=len(systems))
        results = {}
        for name, predictor in systems.items():
            results[name] = evaluate_predictor(predictor, corpus, "test", rollout=config.rollout, seed=config.seed)
            progress.advance(task)

    rows = [{"system": n, "kind": "baseline" if n in BASELINES else "model", "step": s, **ev.summary(s)}
            for n, ev in results.items() for s in range(1, config.rollout + 1)]
    table = pd.DataFrame(rows)
    ctx.write_csv("metrics.csv", table)
    for name, ev in results.items():
        ctx.write_csv(f"per_query/{name}.csv", ev.per_query)
    ctx.write_csv("decoded_examples.csv", pd.concat([ev.decoded.assign(system=n) for n, ev in results.items()]))

    base = best_system(results, list(BASELINES))
    comparisons = [compare_with_baseline(results, base, metric=m, n_boot=config.n_boot, seed=config.seed,
                                         alpha=config.alpha) for m in ("recall@10", "rr")]
    ctx.write_csv("comparison.csv", pd.concat(comparisons, ignore_index=True))
    ctx.write_plot("plots/loss_curves.png", lambda p: _plot_curves(histories, p))
    ctx.write_plot("plots/rollout_recall10.png", lambda p: _plot_rollout(table, p))

    model_names = [s.name for s in config.models]
    best_model = max(model_names, key=lambda n: val_scores[n] or 0.0) if model_names else None
    ood_lines: list[str] = []
    if config.ood_documents is not None and best_model is not None:
        ood_docs, _ = load_documents(config.ood_documents)
        ood = prepare_corpus(ood_docs, context=config.context, stride=config.stride, test_only=True)
        ood_results = {n: evaluate_predictor(systems[n], ood, "test", rollout=config.rollout, seed=config.seed)
                       for n in [*BASELINES, best_model]}
        ood_base = best_system(ood_results, list(BASELINES))
        ood_cmp = compare_with_baseline(ood_results, ood_base, n_boot=config.n_boot, seed=config.seed,
                                        alpha=config.alpha)
        ood_table = pd.DataFrame([{"system": n, "step": s, **ev.summary(s)} for n, ev in ood_results.items()
                                  for s in range(1, config.rollout + 1)])
        ctx.write_csv("ood/metrics.csv", ood_table)
        ctx.write_csv("ood/comparison.csv", ood_cmp)
        ood_lines = [f"## Out of domain: {config.ood_documents} (bank {len(ood.rows('test'))} chunks)", "",
                     metrics_table(_by_system(ood_table[ood_table.step == 1]), row_header="system"), "",
                     f"Recall@10 against `{ood_base}`:", "", comparison_table(ood_cmp), ""]

    step1 = table[table.step == 1].set_index("system")
    metrics = {n: {k: float(step1.loc[n, k]) for k in ("recall@1", "recall@5", "recall@10", "mrr",
                                                        "contrastive_acc", "cosine", "directional")}
               for n in step1.index}
    for n, ev in results.items():
        for s in range(2, config.rollout + 1):
            metrics[n][f"recall@10_step{s}"] = ev.summary(s)["recall@10"]
        ctx.log_variant(f"eval/{n}", metrics[n], params={"n_parameters": params.get(n, 0)})
    lines = ["# lvm_next_chunk", "", f"Documents: {source} ({counts}); context T={config.context}; "
             f"bank = every chunk of the test split ({counts['test']['chunks']}).", "",
             "## Test split, step 1", "", metrics_table(_by_system(table[table.step == 1]), row_header="system"), "",
             "## Rollout (Recall@10 by step)", "",
             metrics_table({n: {f"step {s}": v for s, v in zip(r["step"], r["recall@10"], strict=True)}
                            for n, r in table.groupby("system", sort=False)}, row_header="system"), "",
             f"## Against the best baseline `{base}` (paired permutation test, Holm)", ""]
    for cmp in comparisons:
        lines += [f"### {cmp['metric'].iloc[0]}", "", comparison_table(cmp), ""]
    decoded = results[best_model or base].decoded
    lines += [f"## Decoded examples of `{best_model or base}` (nearest test chunk to the prediction)", ""]
    for _, ex in decoded.iterrows():
        lines += [f"- **{ex['query']}** (truth ranked {ex['rank_of_truth']}): last context: {ex['last_context'][:160]!r}"
                  f" | truth: {ex['truth'][:160]!r} | nearest to prediction: {ex['nearest_to_prediction'][:160]!r}"]
    lines += ["", *ood_lines]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return ExperimentResult(metrics=metrics, notes=[f"best baseline {base}; best model by val recall@10 {best_model}"])
