"""The frozen-base study: the untrained base against trained heads, on SciFact test and SQuAD.

Every head trains on cached base vectors (``training`` module, cached path) with the shared loop;
the number of epochs is chosen by nDCG@10 on a validation split carved from the TRAINING pairs
(20% of the training queries, seeded), never on a test split. Variants: contrastive only,
contrastive + SIGReg at several λ, contrastive + covariance penalty, contrastive with BM25 hard
negatives (``pairs.with_bm25_negatives``), and optionally (``unfrozen_layers``) a contrastive
encoder whose last layers train too (through the base, a fixed number of epochs); trained on human qrels
(SciFact ``qrels/train.tsv``) or on an ETL run's generated questions (synthetic labels, validated on
held-out generated questions: no human label is used anywhere in that variant).

Test retrieval runs over ``corpus``: ``"full"`` (all 5,183 SciFact documents, comparable with the
published numbers) or ``"judged"`` (only the documents judged in the train or test qrels, about
1,200: a smaller, easier corpus whose numbers are NOT comparable with published ones; used when
encoding the full corpus does not fit the time).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liquid_lvm.encoder.diagnostics import isotropy_report, spectrum
from liquid_lvm.encoder.evaluation import (
    RetrievalSet,
    evaluate_vectors,
    retrieval_set_from_beir,
    retrieval_set_from_dataset,
)
from liquid_lvm.encoder.model import IsotropicGaussianEncoder
from liquid_lvm.encoder.objective import ObjectiveConfig
from liquid_lvm.encoder.pairs import (
    PairSet,
    pairs_from_beir,
    pairs_from_etl_run,
    with_bm25_negatives,
)
from liquid_lvm.encoder.training import (
    EncoderTrainConfig,
    base_vectors,
    head_vectors,
    train_encoder,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "contrastive": {"regulariser": "none"},
    "sigreg_l0.02": {"regulariser": "sigreg", "lam": 0.02},
    "sigreg_l0.1": {"regulariser": "sigreg", "lam": 0.1},
    "sigreg_l0.5": {"regulariser": "sigreg", "lam": 0.5},
    "covariance_l0.1": {"regulariser": "covariance", "lam": 0.1},
    "contrastive_bm25neg": {"regulariser": "none"},
}
HARD_NEGATIVE_VARIANTS = {"contrastive_bm25neg"}
"""Variants whose pairs get a BM25 hard negative each (the others use in-batch negatives only)."""


def judged_subset(data: RetrievalSet, extra_keys: set[str]) -> RetrievalSet:
    keep = {d for judged in data.qrels.values() for d in judged} | extra_keys
    rows = [i for i, k in enumerate(data.doc_keys) if k in keep]
    return RetrievalSet(f"{data.name} (judged-docs corpus, {len(rows)} docs)", [data.doc_keys[i] for i in rows],
                        [data.doc_texts[i] for i in rows], data.queries, data.qrels)


def _vectors(encoder, texts) -> torch.Tensor:
    return base_vectors(encoder, list(texts))


def train_head(pairs: PairSet, objective: dict[str, Any], *, epochs: int, seed: int, lr_head: float,
               base: str, val_share: float = 0.2, batch_size: int = 64) -> tuple[IsotropicGaussianEncoder, dict]:
    """A frozen-base encoder trained on ``pairs``; the best epoch by validation nDCG@10 is kept."""
    from liquid_lvm.encoder.evaluation import retrieval_set_from_pairs
    from liquid_lvm.training import TrainConfig

    pairs = pairs.compact()
    train_pairs, val_pairs = pairs.split_queries(val_share, seed)
    enc = IsotropicGaussianEncoder(base, seed=seed)
    qv, dv = _vectors(enc, pairs.queries), _vectors(enc, pairs.docs)
    val = retrieval_set_from_pairs(val_pairs)  # held-out queries against every document of the pairs
    q_row = {k: i for i, k in enumerate(pairs.query_keys)}
    d_row = {k: i for i, k in enumerate(pairs.doc_keys)}
    val_q, val_d = qv[[q_row[k] for k in val.queries]], dv[[d_row[k] for k in val.doc_keys]]

    def validate(encoder):
        return {"ndcg@10": evaluate_vectors(head_vectors(encoder, val_q), head_vectors(encoder, val_d), val,
                                            metrics=["ndcg@10"]).mean["ndcg@10"]}

    steps_per_epoch = -(-len(train_pairs) // batch_size)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr_head, warmup_steps=steps_per_epoch,
                         eval_every=steps_per_epoch, val_metric="ndcg@10", val_mode="max", progress=False,
                         device="cpu", seed=seed, weight_decay=0.0)
    result = train_encoder(enc, train_pairs, config, EncoderTrainConfig(lr_head=lr_head, cached=True,
                           objective=ObjectiveConfig(seed=seed, **objective)), validate=validate, cache=(qv, dv))
    return enc, {"val_ndcg@10": result.loop.best_metric, "best_step": result.loop.best_step,
                 "steps_per_epoch": steps_per_epoch, "seconds_per_epoch": result.seconds_per_epoch,
                 "train_pairs": len(train_pairs), "val_queries": len(val.queries)}


def _score(encoder, data: RetrievalSet, qv: torch.Tensor, dv: torch.Tensor):
    return evaluate_vectors(head_vectors(encoder, qv), head_vectors(encoder, dv), data)


def train_unfrozen(pairs: PairSet, *, n_unfrozen: int, epochs: int, seed: int, lr_head: float, lr_base: float,
                   base: str, batch_size: int = 32) -> tuple[IsotropicGaussianEncoder, dict]:
    """Contrastive training through the base with its last ``n_unfrozen`` layers free, for a fixed
    number of ``epochs`` (no epoch selection: one pass costs minutes on a CPU)."""
    from liquid_lvm.training import TrainConfig

    pairs = pairs.compact()
    enc = IsotropicGaussianEncoder(base, freeze="last_n", n_unfrozen=n_unfrozen, seed=seed)
    steps_per_epoch = -(-len(pairs) // batch_size)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr_head, warmup_steps=steps_per_epoch,
                         progress=True, device="cpu" if not torch.cuda.is_available() else "cuda", seed=seed,
                         weight_decay=0.0)
    result = train_encoder(enc, pairs, config, EncoderTrainConfig(lr_head=lr_head, lr_base=lr_base, cached=False,
                           objective=ObjectiveConfig(seed=seed, regulariser="none")))
    return enc, {"steps_per_epoch": steps_per_epoch, "seconds_per_epoch": result.seconds_per_epoch,
                 "train_pairs": len(pairs), "epochs": epochs, "n_unfrozen": n_unfrozen, "lr_base": lr_base}


def run_study(beir_dir: Path, etl_run: Path | None, squad_path: Path | None, out_dir: Path | None, *,
              corpus: str = "full", epochs: int = 15, lr_head: float = 1e-3, seed: int = 0,
              base: str = "offline:all-minilm-l6-v2", unfrozen_layers: int = 0, unfrozen_epochs: int = 1,
              lr_base: float = 2e-5) -> dict[str, Any]:
    from liquid_shared.stats import compare

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    human = pairs_from_beir(beir_dir, "train")
    test = retrieval_set_from_beir(beir_dir, "test")
    if corpus == "judged":
        test = judged_subset(test, {human.doc_keys[p] for _, p, _ in human.triples})
    sets = {"scifact": test}
    if squad_path is not None:
        from liquid_shared.data import load_squad_retrieval

        sets["squad"] = retrieval_set_from_dataset(load_squad_retrieval(squad_path), "squad")
    untrained = IsotropicGaussianEncoder(base, seed=seed)
    vecs = {name: (_vectors(untrained, list(s.queries.values())), _vectors(untrained, s.doc_texts))
            for name, s in sets.items()}
    per_query: dict[str, dict[str, dict[str, float]]] = {name: {} for name in sets}
    means: dict[str, dict[str, dict[str, float]]] = {name: {} for name in sets}
    info: dict[str, Any] = {"corpus": corpus, "test_docs": len(test.doc_keys), "epochs_max": epochs,
                            "lr_head": lr_head, "seed": seed, "variants": {}}
    diagnostics = {}
    spectra = {}

    def record(variant: str, encoder, through_base: bool = False) -> None:
        raw = None
        for name, data in sets.items():
            if through_base:  # the base changed: encode every text again
                doc_raw = encoder.encode(data.doc_texts, normalize=False)
                qv = encoder.encode(list(data.queries.values()))
                dv = doc_raw / np.linalg.norm(doc_raw, axis=1, keepdims=True)
                res = evaluate_vectors(qv, dv, data)
                raw = doc_raw if name == "scifact" else raw
            else:
                res = _score(encoder, data, *vecs[name])
            per_query[name][variant] = res.per_query["ndcg@10"]
            means[name][variant] = res.mean
        if raw is None:
            raw = head_vectors(encoder, vecs["scifact"][1], normalize=False)
        diagnostics[variant] = isotropy_report(raw, seed=seed)
        spectra[variant] = spectrum(raw).tolist()

    record("base", untrained)
    sources = {"human": human}
    if etl_run is not None:
        sources["etl"] = pairs_from_etl_run(etl_run)
        info["etl_notes"] = sources["etl"].notes
        info["etl_pairs"] = len(sources["etl"])
    for source, pairs in sources.items():
        mined = None
        for vname, objective in VARIANTS.items():
            if source == "etl" and vname not in ("contrastive", "sigreg_l0.1", "contrastive_bm25neg"):
                continue
            name = f"{source}:{vname}"
            t0 = time.perf_counter()
            if vname in HARD_NEGATIVE_VARIANTS:
                mined = mined or with_bm25_negatives(pairs)
                info.setdefault("hard_negatives", {})[source] = mined.notes[-1]
            enc, meta = train_head(mined if vname in HARD_NEGATIVE_VARIANTS else pairs, objective, epochs=epochs,
                                   seed=seed, lr_head=lr_head, base=base)
            meta["train_seconds_total"] = time.perf_counter() - t0
            meta["synthetic_labels"] = pairs.synthetic
            info["variants"][name] = meta
            record(name, enc)
    if unfrozen_layers > 0:
        name = f"human:last{unfrozen_layers}_contrastive"
        t0 = time.perf_counter()
        enc, meta = train_unfrozen(human, n_unfrozen=unfrozen_layers, epochs=unfrozen_epochs, seed=seed,
                                   lr_head=lr_head, lr_base=lr_base, base=base)
        meta["train_seconds_total"] = time.perf_counter() - t0
        meta["synthetic_labels"] = False
        info["variants"][name] = meta
        record(name, enc, through_base=True)
    tables = {}
    for name in sets:
        df = compare(per_query[name], "base", test="paired_t", correction="holm", seed=seed)
        tables[name] = df
        if out_dir is not None:
            df.to_csv(out_dir / f"significance_{name}.csv", index=False)
    sig_vs_con = {}
    for source in sources:
        con = per_query["scifact"].get(f"{source}:contrastive")
        others = {k: v for k, v in per_query["scifact"].items() if k.startswith(f"{source}:") and "contrastive" not in k}
        if con is not None and others:
            df = compare({f"{source}:contrastive": con, **others}, f"{source}:contrastive", correction="holm", seed=seed)
            if out_dir is not None:
                df.to_csv(out_dir / f"regulariser_vs_contrastive_{source}.csv", index=False)
            sig_vs_con[source] = df
    summary = {"info": info, "means": means, "diagnostics": diagnostics}
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        (out_dir / "spectra.json").write_text(json.dumps(spectra))
        (out_dir / "per_query.json").write_text(json.dumps(per_query))
        plot_spectra(spectra, out_dir / "spectra.png")
    return {"summary": summary, "tables": tables, "regulariser_vs_contrastive": sig_vs_con, "spectra": spectra,
            "per_query": per_query}


def plot_spectra(spectra: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ev in spectra.items():
        ev = np.asarray(ev)
        ax.semilogy(np.arange(1, len(ev) + 1), ev / ev.sum(), label=name, lw=1)
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("share of variance")
    ax.set_title("Covariance spectra of SciFact document vectors (head output)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
