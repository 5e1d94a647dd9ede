"""isotropic_beir: does a head trained for isotropy (SIGReg) or for retrieval (InfoNCE) on a frozen
sentence-transformers base retrieve better than the untrained base, on a BEIR folder?

Runs ``liquid_lvm.encoder.study.run_study``: the untrained base (default the offline
all-MiniLM-L6-v2) against heads trained on cached base vectors with the shared loop, the epoch
chosen by nDCG@10 on 20 % of the TRAINING queries (never the test split):

* ``human:*``: trained on the folder's ``qrels/train.tsv`` (human labels): contrastive (in-batch
  InfoNCE), + SIGReg at λ = 0.02, 0.1, 0.5, + the covariance-to-identity penalty (λ = 0.1), and
  contrastive with BM25 hard negatives; with ``unfrozen_layers`` > 0 also a contrastive encoder
  whose last layers train (``human:last<N>_contrastive``, a fixed number of epochs);
* ``etl:*`` (with ``etl_run``): trained on an ETL run's generated questions, each paired with its
  source chunk. These labels are **synthetic** (no human label anywhere in the variant; validated
  on held-out generated questions), and every output says so (``synthetic_labels``).

Evaluated on the folder's test split over its corpus (``corpus = "full"``, comparable with
published numbers, or ``"judged"``: only judged documents, NOT comparable), and on the SQuAD
paragraphs (``squad``; question -> its paragraph) as a no-regression set. Per-query nDCG@10 is
compared with the untrained base (paired t-test, Holm), and each regulariser with the same
source's plain contrastive head; isotropy diagnostics (effective rank, SIGReg distance, mean
cosine of random pairs) and the covariance spectra of the document vectors before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register


class IsotropicBeirConfig(ExperimentConfig):
    beir: Path | None = Field(None, description="BEIR folder with qrels/train.tsv and qrels/test.tsv "
                              "(default: $LIQUID_DATA_DIR/beir/scifact).")
    etl_run: Path | None = Field(None, description="ETL run over (a sample of) the corpus for the synthetic-label "
                                 "variants (`python -m liquid_lvm.encoder sample-corpus`, then the ETL); None = none.")
    squad: Path | None = Field(None, description="SQuAD JSON as a no-regression retrieval set (default: "
                               "$LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json when it exists).")
    use_squad: bool = Field(True, description="Evaluate on the SQuAD set too.")
    corpus: Literal["full", "judged"] = Field("full", description="Test corpus: every document (comparable with "
                                              "published numbers) or only the judged ones (NOT comparable).")
    epochs: int = Field(15, ge=1, description="Most epochs per head (the best by validation nDCG@10 is kept).")
    lr_head: float = Field(1e-3, gt=0, description="Head learning rate.")
    base: str = Field("offline:all-minilm-l6-v2", description="Base sentence-transformers model (alias or folder).")
    unfrozen_layers: int = Field(0, ge=0, description="Also train a contrastive encoder whose last N transformer "
                                 "layers train (through the base; minutes per epoch on a CPU); 0 = none.")
    unfrozen_epochs: int = Field(1, ge=1, description="Epochs of that encoder (fixed in advance, no selection).")


@register("isotropic_beir", IsotropicBeirConfig,
          "Frozen-base heads (InfoNCE, + SIGReg at several λ, + covariance, BM25 hard negatives; human vs generated "
          "labels) against the untrained base on a BEIR test split and SQuAD: nDCG@10, paired tests, isotropy.")
def run(config: IsotropicBeirConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.eval_data import shared_data_file
    from experiments.significance import tables_markdown
    from experiments.squad_eval import SQUAD_FILE
    from liquid_lvm.encoder.study import plot_spectra, run_study

    beir = config.beir or shared_data_file("beir/scifact")
    if beir is None or not (Path(beir) / "qrels" / "test.tsv").is_file():
        raise FileNotFoundError(f"BEIR folder {beir} has no qrels/test.tsv (set `beir` or LIQUID_DATA_DIR)")
    squad = None
    if config.use_squad:
        squad = config.squad or shared_data_file(SQUAD_FILE)
        if squad is not None and not Path(squad).is_file():
            if config.squad is not None:
                raise FileNotFoundError(f"SQuAD file {squad} not found")
            squad = None
    ctx.console.print(f"isotropic_beir: {beir} ({config.corpus} corpus), SQuAD {squad or 'not used'}, "
                      f"ETL run {config.etl_run or 'none'}")
    out = run_study(Path(beir), config.etl_run, squad, None, corpus=config.corpus, epochs=config.epochs,
                    lr_head=config.lr_head, seed=config.seed, base=config.base,
                    unfrozen_layers=config.unfrozen_layers, unfrozen_epochs=config.unfrozen_epochs)
    summary = out["summary"]
    info, means, diagnostics = summary["info"], summary["means"], summary["diagnostics"]

    metrics: dict[str, dict[str, float]] = {}
    for set_name, by_variant in means.items():
        for variant, values in by_variant.items():
            row = metrics.setdefault(variant, {})
            row.update({f"{set_name}.{m}": float(v) for m, v in values.items()})
    for variant, row in metrics.items():
        row.update({f"isotropy.{k}": float(v) for k, v in diagnostics[variant].items()})
        row["synthetic_labels"] = float(variant.startswith("etl:"))
        meta = info["variants"].get(variant, {})
        for key in ("val_ndcg@10", "seconds_per_epoch", "train_pairs"):
            if key in meta:
                row[f"train.{key}"] = float(meta[key])

    frames = []
    for set_name, df in out["tables"].items():
        df = df.copy()
        df.insert(0, "metric", f"{set_name}.ndcg@10")
        frames.append(df)
        ctx.write_csv(f"significance_{set_name}.csv", df)
    for source, df in out["regulariser_vs_contrastive"].items():
        ctx.write_csv(f"regulariser_vs_contrastive_{source}.csv", df)
    ctx.write_json("summary.json", summary)
    ctx.write_json("per_query.json", out["per_query"])
    ctx.write_plot("plots/spectra.png", lambda p: plot_spectra(out["spectra"], p))
    for variant, row in metrics.items():
        ctx.log_variant(variant, row, params={"corpus": config.corpus, "base": config.base,
                                              "labels": "synthetic" if variant.startswith("etl:") else "human"})

    lines = ["# isotropic_beir", "",
             f"BEIR folder `{beir}`, test corpus `{config.corpus}` ({info['test_docs']} documents"
             + ("; judged documents only, NOT comparable with published numbers" if config.corpus == "judged" else "")
             + f"), base `{config.base}`, heads trained on cached base vectors, at most {config.epochs} epochs, the "
             "best by nDCG@10 on 20 % of the training queries.", ""]
    if "etl_pairs" in info:
        lines += [f"`etl:*` variants: {info['etl_pairs']} generated questions of `{config.etl_run}` paired with their "
                  "source chunks: **synthetic labels** (made by the pipeline, no human judged them). "
                  + " ".join(info.get("etl_notes", [])), ""]
    for source, note in info.get("hard_negatives", {}).items():
        lines.append(f"- {source}: {note}")
    lines += ["", "## Against the untrained base (paired t-test, Holm)", "", tables_markdown(frames)]
    for source, df in out["regulariser_vs_contrastive"].items():
        df = df.copy()
        df.insert(0, "metric", f"scifact.ndcg@10 vs {source}:contrastive")
        lines += [f"## Regulariser against plain contrastive ({source})", "", tables_markdown([df])]
    iso = pd.DataFrame([{"variant": v, **{k: round(float(x), 4) for k, x in d.items()}} for v, d in diagnostics.items()])
    lines += ["## Isotropy of the document vectors (head output)", "", iso.to_markdown(index=False), ""]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    notes = []
    if "etl_pairs" in info:
        notes.append("etl:* variants are trained on synthetic labels (generated question -> its source chunk)")
    if config.corpus == "judged":
        notes.append("judged-documents corpus: NOT comparable with published full-corpus numbers")
    return ExperimentResult(metrics=metrics, notes=notes)
