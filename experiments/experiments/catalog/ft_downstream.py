"""ft_downstream: what is the ETL's fine-tuning data worth on questions people wrote?

1. **Data.** An ETL run over a seeded sample of the shared Wikipedia articles (``--etl-run`` to
   reuse one; otherwise made in ``cache_dir`` with ``etl_pipeline.run_etl``, which resumes). Its QA
   pairs are split by the ETL's own validation verdict: *validated* and *rejected*; *random* draws
   from both. All three variants get the same number of pairs (the smaller of the two sets,
   capped by ``max_pairs``), so only the kind of data differs. The pairs are synthetic (generated
   and judged by the pipeline); the evaluation below is not.
2. **Training.** A LoRA adapter per variant and training seed (``train_seeds``; default one, the
   run's ``seed``) on the offline base model (``liquid_finetune``), same settings. The seed moves
   the LoRA initialisation, the data order and the held-out pairs, not the pairs drawn, so
   several seeds measure how much of a difference is one adapter's luck. Adapters are cached in
   ``cache_dir/variants/<name>`` (``<name>-seed<k>`` with several seeds) under a key of their
   data and settings, so a rerun trains only what is missing (each fits one command).
3. **Evaluation.** Human questions of SQuAD v2.0 dev (the shared 3-article file; answerable ones
   only, a seeded sample of ``n_questions``), context + question in the fine-tuning prompt format
   (the ETL's system prompt, ``Context: ...\\n\\nQuestion: ...``), greedy decoding, the first line
   of the reply scored with SQuAD exact match and token F1 (official normalisation,
   ``liquid_shared.metrics``), max over the gold answers. The base model answers the same prompts.
   Predictions are cached per model, so an interrupted evaluation resumes.
4. **Statistics.** Paired over questions: every variant against the base, and validated against
   rejected and random (``liquid_shared.stats.compare``: paired t-test, Holm over each family,
   BCa bootstrap CIs); with several seeds a question's score is the mean over the variant's
   adapters. With several seeds also the spread between seeds (each seed's mean, their SD and
   range) and a test on seed means (Welch's t over the seeds' mean scores, each variant against
   rejected: the unit is the adapter, not the question). The answer-length confound: mean words
   of each model's answers and of each variant's training answers (F1 and EM reward answers as
   short as SQuAD's). Learning curves: train and eval loss per step of every adapter.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register

VARIANTS = ("validated", "rejected", "random")


def _default_data_dir() -> Path:
    return Path(os.environ.get("LIQUID_DATA_DIR") or Path(__file__).resolve().parents[3].parent / "shared" / "data")


class FtDownstreamConfig(ExperimentConfig):
    etl_run: Path | None = Field(None, description="ETL run folder to take the QA pairs from; None = "
                                 "make one from the Wikipedia sample in cache_dir.")
    articles: Path = Field(default_factory=lambda: _default_data_dir() / "wikipedia" / "articles.jsonl",
                           description="Wikipedia articles JSONL (shared data).")
    squad: Path = Field(default_factory=lambda: _default_data_dir() / "squad" / "dev-v2.0-3articles.json",
                        description="SQuAD v2.0 JSON with the human questions (shared data).")
    cache_dir: Path = Field(Path("data/runs/ft_downstream"), description="Resumable work: ETL run, adapters, "
                            "predictions.")
    n_articles: int = Field(10, ge=1, le=200, description="Articles sampled for the ETL run.")
    max_chunks_per_doc: int = Field(10, ge=1, description="Chunks per article in the ETL run (longer ones are cut).")
    max_pairs: int = Field(200, ge=2, description="Most training pairs per variant.")
    n_questions: int = Field(150, ge=2, description="SQuAD questions evaluated (seeded sample of answerable ones).")
    base_model: str = Field("offline:smollm2-135m-instruct", description="Base model the adapters are trained on.")
    epochs: float = Field(3.0, gt=0, description="Training passes over each variant's pairs.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak LoRA learning rate (AdamW, linear decay).")
    lora_r: int = Field(8, ge=1, description="LoRA rank (alpha = 2 r).")
    batch_size: int = Field(4, ge=1, description="Training examples per step.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of each variant's pairs held out for eval loss "
                                 "and early stopping (synthetic pairs, never the SQuAD questions).")
    max_new_tokens: int = Field(24, ge=1, description="Answer budget in tokens (the first line is scored).")
    train_seeds: list[int] | None = Field(None, description="Training seeds per variant (LoRA init, data order, "
                                          "held-out pairs); None = [seed]. Three or more give the spread between "
                                          "seeds and a test on seed means.")

    @field_validator("train_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError(f"train_seeds must be a non-empty list of distinct seeds, got {seeds}")
        return seeds

    def training_seeds(self) -> list[int]:
        return list(self.train_seeds) if self.train_seeds is not None else [self.seed]


def _ensure_etl_run(config: FtDownstreamConfig, ctx: RunContext) -> Path:
    if config.etl_run is not None:
        return config.etl_run
    from experiments.wikipedia_sample import write_article_sample

    cache = config.cache_dir.resolve()
    articles = write_article_sample(config.articles, cache / "articles", config.n_articles, config.seed)
    run = cache / "etl"
    if not (run / "report.json").is_file():
        ctx.console.print(f"ft_downstream: running the ETL on {articles} into {run} (resumable)")
        command = [sys.executable, "-m", "etl_pipeline.run_etl", str(articles.parent), "-o", str(run),
                   "--max-chunks-per-doc", str(config.max_chunks_per_doc), "--stages", "qa,judge", "-q", "--no-track"]
        proc = subprocess.run(command, check=False)
        if proc.returncode not in (0, 3):  # 3: finished with some documents failed
            raise RuntimeError(f"the ETL failed on {articles} (exit {proc.returncode}); see its output above")
    return run


def chat_of(item: Any) -> list[dict[str, str]]:
    from etl_pipeline.assemble import FT_SYSTEM_PROMPT

    return [{"role": "system", "content": FT_SYSTEM_PROMPT},
            {"role": "user", "content": f"Context:\n{item.context}\n\nQuestion: {item.question}"},
            {"role": "assistant", "content": item.answer}]


def variant_sets(run: Path, max_pairs: int, seed: int) -> dict[str, list[list[dict[str, str]]]]:
    """validated / rejected / random conversations of equal size from an ETL run's QA pairs."""
    from experiments.ft_sets import load_ft_set

    valid = [i for i in load_ft_set(run, "valid") if i.schema_valid]
    rejected = [i for i in load_ft_set(run, "invalid") if i.schema_valid and i.answer.strip()]
    n = min(len(valid), len(rejected), max_pairs)
    if n < 2:
        raise ValueError(f"ETL run {run} has {len(valid)} validated and {len(rejected)} rejected QA pairs; "
                         "need at least 2 of each")
    rng = random.Random(seed)
    return {"validated": [chat_of(i) for i in rng.sample(valid, n)],
            "rejected": [chat_of(i) for i in rng.sample(rejected, n)],
            "random": [chat_of(i) for i in rng.sample(valid + rejected, n)]}


def squad_questions(path: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of the answerable questions: id, context, question, gold answers."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = [{"id": q["id"], "context": p["context"], "question": q["question"],
              "answers": sorted({a["text"] for a in q["answers"]})}
             for article in data["data"] for p in article["paragraphs"] for q in p["qas"]
             if not q.get("is_impossible") and q.get("answers")]
    if n < len(items):
        items = random.Random(seed).sample(items, n)
    return sorted(items, key=lambda q: q["id"])


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def adapter_name(variant: str, seed: int, seeds: list[int]) -> str:
    """The model's name in tables and caches: the variant alone with one seed, ``<variant>-seed<k>`` with several."""
    return variant if len(seeds) == 1 else f"{variant}-seed{seed}"


def variant_folder(cache: Path, variant: str, seed: int, seeds: list[int]) -> Path:
    """Where an adapter is trained and cached: ``variants/<adapter_name>`` (one seed: ``variants/<variant>``,
    as before seeds were added)."""
    return cache / "variants" / adapter_name(variant, seed, seeds)


def seed_means(scores: dict[str, list[float]], variant: str, seeds: list[int]) -> dict[int, float]:
    """Each adapter's mean score over the questions: seed -> mean."""
    return {s: sum(scores[adapter_name(variant, s, seeds)]) / len(scores[adapter_name(variant, s, seeds)]) for s in seeds}


def per_question_mean(scores: dict[str, list[float]], variant: str, seeds: list[int]) -> list[float]:
    """A variant's score per question: the mean over its adapters."""
    rows = [scores[adapter_name(variant, s, seeds)] for s in seeds]
    return [sum(col) / len(col) for col in zip(*rows, strict=True)]


def seed_spread(scores: dict[str, list[float]], seeds: list[int], baseline: str = "rejected") -> list[dict[str, Any]]:
    """Per variant: every seed's mean, their mean, SD (n - 1) and range; with two or more seeds,
    Welch's t-test of its seed means against ``baseline``'s (``p`` None with one seed)."""
    from liquid_shared.stats import welch_t_test

    base = list(seed_means(scores, baseline, seeds).values())
    rows = []
    for variant in VARIANTS:
        means = list(seed_means(scores, variant, seeds).values())
        mu = sum(means) / len(means)
        sd = (sum((m - mu) ** 2 for m in means) / (len(means) - 1)) ** 0.5 if len(means) > 1 else float("nan")
        row = {"variant": variant, "seed_means": dict(zip(seeds, means, strict=True)), "mean": mu, "sd": sd,
               "min": min(means), "max": max(means), "diff_vs_" + baseline: mu - sum(base) / len(base), "p": None}
        if variant != baseline and len(seeds) > 1:
            row["p"] = welch_t_test(means, base).p_value
        rows.append(row)
    return rows


def _words(text: str) -> int:
    return len(text.split())


def answer_lengths(predictions: dict[str, dict[str, str]], sets: dict[str, list], questions: list[dict[str, Any]]
                   ) -> dict[str, dict[str, float]]:
    """Mean words per answer: each model's SQuAD answers, each variant's training answers, and SQuAD's gold."""
    out: dict[str, dict[str, float]] = {}
    for name, preds in predictions.items():
        out[name] = {"answer_words": sum(_words(preds[q["id"]]) for q in questions) / len(questions)}
    for variant, convs in sets.items():
        words = [_words(c[-1]["content"]) for c in convs]
        for name in out:
            if name == variant or name.startswith(variant + "-seed"):
                out[name]["train_answer_words"] = sum(words) / len(words)
    gold = [min(_words(a) for a in q["answers"]) for q in questions]
    out["gold (shortest)"] = {"answer_words": sum(gold) / len(gold)}
    return out


def seed_table(metric: str, rows: list[dict[str, Any]], seeds: list[int]) -> str:
    """Markdown: ``seed_spread``'s rows for one metric."""
    lines = [f"### SQuAD {metric} between training seeds ({', '.join(map(str, seeds))})", "",
             "| variant | mean per seed | mean | SD | range | diff vs rejected | p (Welch, seed means) |",
             "|---|---|---:|---:|---|---:|---:|"]
    for row in rows:
        per_seed = " / ".join(f"{m:.3f}" for m in row["seed_means"].values())
        p = "—" if row["p"] is None else f"{row['p']:.3f}"
        lines.append(f"| {row['variant']} | {per_seed} | {row['mean']:.3f} | {row['sd']:.3f} | "
                     f"{row['min']:.3f}–{row['max']:.3f} | {row['diff_vs_rejected']:+.3f} | {p} |")
    return "\n".join(lines) + (f"\n\nWelch's t-test over the {len(seeds)} adapters' mean scores per variant (not "
                               "Holm-corrected; the unit is the adapter, so it asks whether the kind of data matters "
                               "beyond one adapter's luck).")


def length_table(lengths: dict[str, dict[str, float]]) -> str:
    """Markdown: ``answer_lengths`` (the answer-length confound)."""
    lines = ["### Answer length (words)", "", "| model | mean answer words on SQuAD | mean training answer words |",
             "|---|---:|---:|"]
    for name, row in lengths.items():
        train = row.get("train_answer_words")
        lines.append(f"| {name} | {row['answer_words']:.2f} | {'—' if train is None else f'{train:.2f}'} |")
    return "\n".join(lines)


def train_variant(name: str, convs: list, config: FtDownstreamConfig, folder: Path, seed: int | None = None
                  ) -> dict[str, Any]:
    from liquid_finetune import FinetuneConfig, finetune, write_chat_jsonl

    settings = dict(base_model=config.base_model, epochs=config.epochs, learning_rate=config.learning_rate,
                    lora_r=config.lora_r, lora_alpha=2 * config.lora_r, batch_size=config.batch_size,
                    eval_fraction=config.eval_fraction, seed=config.seed if seed is None else seed)
    key = _key({"data": convs, **settings})
    done = folder / "result.json"
    if done.is_file() and json.loads((folder / "key.json").read_text()).get("key") == key:
        return json.loads(done.read_text())
    data = write_chat_jsonl(folder / "train.jsonl", convs)
    (folder / "key.json").write_text(json.dumps({"key": key}))
    done.unlink(missing_ok=True)
    result = finetune(FinetuneConfig(data=data, output_dir=folder, resume=True, progress=False, **settings))
    return result.to_json()


def predict(spec: Any, questions: list[dict[str, Any]], cache: Path, max_new_tokens: int, on_done) -> dict[str, str]:
    """Greedy answers of ``spec`` to every question, cached line by line in ``cache`` (resumes)."""
    from etl_pipeline.assemble import FT_SYSTEM_PROMPT
    from liquid_shared.models.backend import GenRequest
    from liquid_shared.models.registry import get_registry

    done: dict[str, str] = {}
    if cache.is_file():
        for line in cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["id"]] = row["prediction"]
    todo = [q for q in questions if q["id"] not in done]
    if todo:
        backend = get_registry().get(spec)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("a", encoding="utf-8") as out:
            for start in range(0, len(todo), 16):
                batch = todo[start:start + 16]
                reqs = [GenRequest(messages=[{"role": "system", "content": FT_SYSTEM_PROMPT},
                                             {"role": "user", "content": f"Context:\n{q['context']}\n\n"
                                                                         f"Question: {q['question']}"}],
                                   max_new_tokens=max_new_tokens, temperature=0.0, min_p=0.0, repetition_penalty=1.0)
                        for q in batch]
                results = backend.generate_batch(reqs, [backend.render(r.messages) for r in reqs])
                for q, res in zip(batch, results, strict=True):
                    text = (res.text.strip().splitlines() or [""])[0].strip()
                    done[q["id"]] = text
                    out.write(json.dumps({"id": q["id"], "prediction": text}) + "\n")
                out.flush()
                on_done(len(batch))
        get_registry().unload(spec)
    return done


def _plot_curves(histories: dict[str, dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for name, result in histories.items():
        if result.get("train_loss"):
            steps, losses = zip(*result["train_loss"], strict=True)
            ax.plot(steps, losses, label=f"{name} train")
        if result.get("eval_loss"):
            steps, losses = zip(*result["eval_loss"], strict=True)
            ax.plot(steps, losses, "--o", label=f"{name} eval")
    if not ax.lines:
        raise ValueError("no loss history to plot")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title("LoRA learning curves (synthetic pairs)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120, bbox_inches="tight")


@register("ft_downstream", FtDownstreamConfig,
          "LoRA on validated / rejected / random ETL pairs, scored on human SQuAD questions against the base")
def run(config: FtDownstreamConfig, ctx: RunContext) -> ExperimentResult:
    from liquid_shared.metrics import exact_match, token_f1
    from liquid_shared.models import ModelSpec
    from liquid_shared.reporting import comparison_table
    from liquid_shared.stats import compare

    etl_run = _ensure_etl_run(config, ctx)
    sets = variant_sets(etl_run, config.max_pairs, config.seed)
    questions = squad_questions(config.squad, config.n_questions, config.seed)
    cache = config.cache_dir.resolve()
    seeds = config.training_seeds()
    trained = {}
    for name in VARIANTS:
        for seed in seeds:
            adapter = adapter_name(name, seed, seeds)
            ctx.console.print(f"ft_downstream: training '{adapter}' on {len(sets[name])} synthetic pairs (seed {seed})")
            trained[adapter] = train_variant(name, sets[name], config, variant_folder(cache, name, seed, seeds), seed)

    specs = {"base": ModelSpec(model=config.base_model, temperature=0.0)}
    specs.update({name: ModelSpec(model=config.base_model, adapter=result["adapter_dir"], temperature=0.0)
                  for name, result in trained.items()})
    predictions = {}
    with ctx.progress() as progress:
        for name, spec in specs.items():
            task = progress.add_task(name, total=len(questions))
            predictions[name] = predict(spec, questions, cache / "predictions" / f"{name}-{_key(questions)}.jsonl",
                                        config.max_new_tokens, lambda n, t=task: progress.advance(t, n))
    em = {n: [exact_match(p[q["id"]], q["answers"]) for q in questions] for n, p in predictions.items()}
    f1 = {n: [token_f1(p[q["id"]], q["answers"]) for q in questions] for n, p in predictions.items()}

    tables = []
    spreads = {}
    for metric, per_model in (("EM", em), ("F1", f1)):
        # a variant's score per question: the mean over its adapters (one seed: that adapter's)
        scores = {"base": per_model["base"], **{v: per_question_mean(per_model, v, seeds) for v in VARIANTS}}
        vs_base = compare(scores, "base", test="paired_t", correction="holm", seed=config.seed)
        vs_rej = compare({k: scores[k] for k in ("rejected", "validated", "random")}, "rejected",
                         test="paired_t", correction="holm", seed=config.seed)
        ctx.write_csv(f"compare_{metric.lower()}_vs_base.csv", vs_base)
        ctx.write_csv(f"compare_{metric.lower()}_vs_rejected.csv", vs_rej)
        over = f" (per question: the mean over {len(seeds)} training seeds)" if len(seeds) > 1 else ""
        tables.append(f"### SQuAD {metric} vs base (n = {len(questions)} human questions{over})\n\n"
                      + comparison_table(vs_base, metric=metric)
                      + f"\n\n### SQuAD {metric}: validated and random vs rejected{over}\n\n"
                      + comparison_table(vs_rej, metric=metric))
        spreads[metric] = seed_spread(per_model, seeds)
        if len(seeds) > 1:
            tables.append(seed_table(metric, spreads[metric], seeds))
    lengths = answer_lengths(predictions, sets, questions)
    tables.append(length_table(lengths))
    ctx.write_text("table.md", "\n\n".join(tables) + "\n")
    ctx.write_json("per_question.json", [{"id": q["id"], "question": q["question"], "answers": q["answers"],
                                          **{n: predictions[n][q["id"]] for n in specs}} for q in questions])
    ctx.write_json("training.json", trained)
    ctx.write_json("seeds.json", {"seeds": seeds, "spread": spreads, "answer_lengths": lengths})
    ctx.write_plot("learning_curves.png", lambda p: _plot_curves(trained, p))

    metrics: dict[str, dict[str, float]] = {}
    for name in specs:
        row = {"squad_em": sum(em[name]) / len(questions), "squad_f1": sum(f1[name]) / len(questions),
               "answer_words": lengths[name]["answer_words"]}
        if name in trained:
            t = trained[name]
            row.update(n_train=float(t["n_train"]), train_seconds=float(t["seconds"]), steps=float(t["steps"]),
                       peak_rss_gib=t["peak_rss_bytes"] / 2**30)
        metrics[name] = row
        ctx.log_variant(name, row, params={"base_model": config.base_model})
    if len(seeds) > 1:
        for metric in ("EM", "F1"):
            for row in spreads[metric]:
                metrics.setdefault(row["variant"], {}).update(
                    {f"squad_{metric.lower()}_seed_mean": row["mean"], f"squad_{metric.lower()}_seed_sd": row["sd"]})
    notes = [f"training pairs are synthetic (generated and judged by the ETL on {etl_run}); evaluation questions "
             f"are SQuAD's human questions ({len(questions)} answerable, seeded sample)"]
    return ExperimentResult(metrics=metrics, notes=notes)
