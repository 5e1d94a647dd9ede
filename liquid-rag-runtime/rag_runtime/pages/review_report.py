"""``review report``: what the reviewers said, how far they agree, and how good the ETL's verdict is.

From the standing judgments (``ReviewStore.current``; skips left out):

* agreement: Cohen's kappa for every two reviewers over the pairs both judged, Krippendorff's
  alpha over all reviewers, each with a bootstrap 95 % CI over pairs;
* the majority human verdict per pair (accept or reject by more reviewers; a tie is left out);
* the ETL's verdict (``validation.jsonl``: valid = accept) against that majority: precision,
  recall and F1 of "accept", the confusion table, by QA mode, by the reviewers' rejection reasons
  (which share of the pairs people rejected for that reason the ETL rejected too) and by the ETL's
  own rejection reasons (which share of those pairs people accepted);
* references that are not people (e.g. ``squad_reference``): the same numbers for the ETL against
  each, and each one's kappa with the human majority;
* the human-accepted set (majority accept), with the accepting reviewers' latest edited answer
  applied, as ``accepted.jsonl`` and ``accepted.parquet`` for fine-tuning.

Writes ``report.json``, ``report.md`` and the exports into the output folder, and logs them to
MLflow (``liquid_shared.tracking``) unless tracking is off. Reads the run folder, never writes it.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag_runtime.pages.agreement import (
    DEFAULT_BOOT,
    alpha_with_ci,
    bootstrap,
    cohen_kappa,
    pairwise_kappas,
    verdict_accuracy,
)
from rag_runtime.pages.review_run import ReviewRun
from rag_runtime.pages.review_store import Judgment, ReviewStore

DEFAULT_EXPERIMENT = "qa-review"


def json_safe(obj: Any) -> Any:
    """``obj`` with every nan replaced by None (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _reason_key(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head[:60] or "(none)"


def majority_verdicts(judgments: list[Judgment]) -> dict[str, dict[str, Any]]:
    """Per pair: ``{"verdict": accept|reject|tie, "accept", "reject", "reasons": Counter, "edit"}``;
    ``edit`` is the latest edited answer of a reviewer who accepted."""
    out: dict[str, dict[str, Any]] = {}
    for j in judgments:
        if j.verdict not in ("accept", "reject"):
            continue
        entry = out.setdefault(j.qa_id, {"accept": 0, "reject": 0, "reasons": Counter(), "edit": None, "edit_id": -1,
                                         "reviewers": []})
        entry[j.verdict] += 1
        entry["reviewers"].append(j.reviewer)
        if j.verdict == "reject":
            entry["reasons"].update(set(j.reasons))
        if j.verdict == "accept" and j.edited_answer and j.id > entry["edit_id"]:
            entry["edit"], entry["edit_id"] = j.edited_answer, j.id
    for entry in out.values():
        entry["verdict"] = ("accept" if entry["accept"] > entry["reject"] else
                            "reject" if entry["reject"] > entry["accept"] else "tie")
    return out


def _accuracy_with_ci(items: list[tuple[str, str]], n_boot: int) -> dict[str, Any]:
    acc = verdict_accuracy([p for p, _ in items], [r for _, r in items])
    for name in ("precision", "recall", "f1"):
        ci = bootstrap(items, lambda xs, name=name: verdict_accuracy([p for p, _ in xs], [r for _, r in xs])[name], n_boot)
        acc[f"{name}_ci"] = [ci["low"], ci["high"]]
    return acc


def _etl(run: ReviewRun, qa_id: str) -> str | None:
    etl = run.pairs[qa_id].etl
    return None if etl is None else ("accept" if etl.valid else "reject")


def build_report(run: ReviewRun, judgments: list[Judgment], references: Mapping[str, Mapping[str, str]] | None = None,
                 n_boot: int = DEFAULT_BOOT) -> dict[str, Any]:
    """The report as a JSON-able dict (see the module docstring)."""
    references = references or {}
    judgments = [j for j in judgments if j.qa_id in run.pairs]
    per_reviewer: dict[str, Counter] = defaultdict(Counter)
    ratings: dict[str, dict[str, str]] = defaultdict(dict)
    for j in judgments:
        per_reviewer[j.reviewer][j.verdict] += 1
        if j.verdict in ("accept", "reject"):
            ratings[j.reviewer][j.qa_id] = j.verdict
    majority = majority_verdicts(judgments)
    decided = {q: m["verdict"] for q, m in majority.items() if m["verdict"] != "tie"}

    items = [(_etl(run, q), v, q) for q, v in sorted(decided.items()) if _etl(run, q) is not None]
    validator: dict[str, Any] = {"overall": _accuracy_with_ci([(p, r) for p, r, _ in items], n_boot) if items else None}
    by_mode: dict[str, list] = defaultdict(list)
    for p, r, q in items:
        by_mode[run.pairs[q].qa_mode].append((p, r))
    validator["by_qa_mode"] = {mode: verdict_accuracy([p for p, _ in xs], [r for _, r in xs]) for mode, xs in sorted(by_mode.items())}
    by_reason: dict[str, list[str]] = defaultdict(list)
    for p, r, q in items:
        if r == "reject":
            for reason in majority[q]["reasons"] or ["(no reason given)"]:
                by_reason[reason].append(p)
    validator["by_human_reason"] = [
        {"reason": reason, "n": len(ps), "etl_rejected": sum(p == "reject" for p in ps),
         "share_caught": sum(p == "reject" for p in ps) / len(ps)} for reason, ps in sorted(by_reason.items())]
    by_etl_reason: dict[str, list[str]] = defaultdict(list)
    for p, r, q in items:
        if p == "reject":
            for reason in {_reason_key(x) for x in run.pairs[q].etl.reasons} or {"(none)"}:
                by_etl_reason[reason].append(r)
    validator["by_etl_reason"] = [
        {"reason": reason, "n": len(rs), "human_accepted": sum(r == "accept" for r in rs),
         "share_human_accepted": sum(r == "accept" for r in rs) / len(rs)} for reason, rs in sorted(by_etl_reason.items())]

    refs_out = {}
    for name, verdicts in references.items():
        ref_items = [(_etl(run, q), v) for q, v in sorted(verdicts.items()) if q in run.pairs and _etl(run, q) is not None]
        shared = sorted(set(verdicts) & set(decided))
        refs_out[name] = {
            "n": len(verdicts), "accepted": sum(v == "accept" for v in verdicts.values()),
            "etl_against_reference": _accuracy_with_ci(ref_items, n_boot) if ref_items else None,
            "kappa_with_human_majority": {"n": len(shared), **({} if not shared else bootstrap(
                [(verdicts[q], decided[q]) for q in shared],
                lambda xs: cohen_kappa([a for a, _ in xs], [b for _, b in xs]), n_boot))},
        }
    return {
        "run": str(run.folder), "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pairs": len(run.pairs), "judged_pairs": len(majority), "n_boot": n_boot,
        "qa_modes": dict(Counter(p.qa_mode for p in run.pairs.values())),
        "etl_valid": sum(1 for p in run.pairs.values() if p.etl and p.etl.valid),
        "reviewers": {r: dict(c) for r, c in sorted(per_reviewer.items())},
        "agreement": {"pairwise_kappa": pairwise_kappas(ratings, n_boot), "krippendorff_alpha": alpha_with_ci(ratings, n_boot)},
        "majority": dict(Counter(m["verdict"] for m in majority.values())),
        "validator": validator, "references": refs_out,
    }


def accepted_records(run: ReviewRun, judgments: list[Judgment]) -> list[dict[str, Any]]:
    """The human-accepted pairs (majority accept), edits applied, in run order."""
    majority = majority_verdicts([j for j in judgments if j.qa_id in run.pairs])
    out = []
    for qa_id, pair in run.pairs.items():
        m = majority.get(qa_id)
        if m is None or m["verdict"] != "accept":
            continue
        out.append({"qa_id": qa_id, "chunk_id": pair.chunk_id, "doc_id": pair.doc_id, "question": pair.question,
                    "answer": m["edit"] or pair.answer, "original_answer": pair.answer, "edited": m["edit"] is not None,
                    "context": pair.chunk, "qa_mode": pair.qa_mode, "reviewers": sorted(set(m["reviewers"])),
                    "etl_valid": pair.etl.valid if pair.etl else None})
    return out


def _f(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _ci(low: Any, high: Any) -> str:
    return f"[{_f(low)}, {_f(high)}]"


def _accuracy_lines(acc: dict[str, Any] | None) -> list[str]:
    if not acc:
        return ["No pair has both an ETL verdict and a decided reference verdict.", ""]
    c = acc["confusion"]
    return [f"n = {acc['n']}: precision {_f(acc['precision'])} {_ci(*acc['precision_ci'])}, recall {_f(acc['recall'])} "
            f"{_ci(*acc['recall_ci'])}, F1 {_f(acc['f1'])} {_ci(*acc['f1_ci'])}; rejected pairs caught "
            f"{_f(acc['reject_recall'])}.", "",
            "| ETL \\ reference | accept | reject |", "|---|---|---|",
            f"| valid (accept) | {c['accept_accept']} | {c['accept_reject']} |",
            f"| invalid (reject) | {c['reject_accept']} | {c['reject_reject']} |", ""]


def report_markdown(report: dict[str, Any]) -> str:
    lines = [f"# QA review of {Path(report['run']).name}", "",
             f"{report['pairs']} pairs ({', '.join(f'{m}: {n}' for m, n in report['qa_modes'].items())}), "
             f"{report['etl_valid']} valid by the ETL; {report['judged_pairs']} judged by people "
             f"(majority: {', '.join(f'{k} {v}' for k, v in sorted(report['majority'].items())) or 'none'}). "
             f"Intervals: bootstrap 95 % over pairs ({report['n_boot']} resamples). The ETL's verdicts are synthetic labels; "
             "the reviewers' are human.", "", "## Reviewers", "", "| reviewer | accept | reject | skip |", "|---|---|---|---|"]
    for r, c in report["reviewers"].items():
        lines.append(f"| {r} | {c.get('accept', 0)} | {c.get('reject', 0)} | {c.get('skip', 0)} |")
    lines += ["", "## Agreement", "", "| reviewers | pairs | observed agreement | Cohen's kappa | 95 % CI |", "|---|---|---|---|---|"]
    for k in report["agreement"]["pairwise_kappa"]:
        lines.append(f"| {' / '.join(k['raters'])} | {k['n']} | {_f(k['observed_agreement'])} | {_f(k['kappa'])} | {_ci(k['low'], k['high'])} |")
    a = report["agreement"]["krippendorff_alpha"]
    lines += ["", f"Krippendorff's alpha (nominal, {a['raters']} reviewers, {a['n_items']} pairs with two or more "
              f"judgments): {_f(a['alpha'])} {_ci(a['low'], a['high'])}.", "",
              "## The ETL's verdict against the majority human verdict", ""]
    v = report["validator"]
    lines += _accuracy_lines(v["overall"])
    if v["by_qa_mode"]:
        lines += ["By QA mode:", "", "| mode | n | precision | recall | F1 |", "|---|---|---|---|---|"]
        lines += [f"| {m} | {x['n']} | {_f(x['precision'])} | {_f(x['recall'])} | {_f(x['f1'])} |" for m, x in v["by_qa_mode"].items()]
        lines.append("")
    if v["by_human_reason"]:
        lines += ["Pairs people rejected, by their reason: how many the ETL rejected too.", "",
                  "| reason | pairs | ETL rejected | share |", "|---|---|---|---|"]
        lines += [f"| {x['reason']} | {x['n']} | {x['etl_rejected']} | {_f(x['share_caught'])} |" for x in v["by_human_reason"]]
        lines.append("")
    if v["by_etl_reason"]:
        lines += ["Pairs the ETL rejected, by its reason: how many people accepted.", "",
                  "| ETL reason | pairs | people accepted | share |", "|---|---|---|---|"]
        lines += [f"| {x['reason']} | {x['n']} | {x['human_accepted']} | {_f(x['share_human_accepted'])} |" for x in v["by_etl_reason"]]
        lines.append("")
    for name, ref in report["references"].items():
        k = ref["kappa_with_human_majority"]
        lines += [f"## Reference: {name}", "", f"{ref['n']} pairs with a verdict, {ref['accepted']} accepted. "
                  f"Kappa with the human majority: {_f(k.get('estimate'))} {_ci(k.get('low'), k.get('high'))} over {k['n']} pairs.",
                  "", "The ETL's verdict against it:", ""]
        lines += _accuracy_lines(ref["etl_against_reference"])
    if "exported" in report:
        e = report["exported"]
        lines += ["## Human-accepted set", "", f"{e['n']} pairs ({e['edited']} with an edited answer): `{e['jsonl']}`, `{e['parquet']}`.", ""]
    return "\n".join(lines) + "\n"


def write_report(run_folder: str | Path, db: str | Path, out_dir: str | Path,
                 references: Mapping[str, Mapping[str, str]] | None = None, n_boot: int = DEFAULT_BOOT,
                 track: bool = True, experiment: str = DEFAULT_EXPERIMENT, run: ReviewRun | None = None) -> dict[str, Any]:
    """Build the report, write ``report.json``, ``report.md``, ``accepted.jsonl``, ``accepted.parquet``
    into ``out_dir`` and log them to MLflow (``track``); returns the report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from liquid_shared.atomic import write_json_atomic

    run = run or ReviewRun.load(run_folder)
    out = Path(out_dir)
    if out.resolve().is_relative_to(run.folder.resolve()):
        raise ValueError(f"the report folder {out} is inside the run folder {run.folder}; the run folder is never modified")
    if Path(db).is_file():
        store = ReviewStore(db)
        try:
            judgments = store.current()
        finally:
            store.close()
    elif references:
        judgments = []  # a report of the references alone
    else:
        raise FileNotFoundError(f"judgments database {db} not found (review the run first: python -m rag_runtime review serve {run_folder})")
    report = build_report(run, judgments, references, n_boot)
    out.mkdir(parents=True, exist_ok=True)
    records = accepted_records(run, judgments)
    jsonl, parquet = out / "accepted.jsonl", out / "accepted.parquet"
    tmp = jsonl.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(jsonl)
    schema = pa.schema([("qa_id", pa.string()), ("chunk_id", pa.string()), ("doc_id", pa.string()), ("question", pa.string()),
                        ("answer", pa.string()), ("original_answer", pa.string()), ("edited", pa.bool_()),
                        ("context", pa.string()), ("qa_mode", pa.string()), ("reviewers", pa.list_(pa.string())),
                        ("etl_valid", pa.bool_())])
    pq.write_table(pa.Table.from_pylist(records, schema=schema), parquet.with_suffix(".parquet.tmp"))
    parquet.with_suffix(".parquet.tmp").replace(parquet)
    report["exported"] = {"n": len(records), "edited": sum(r["edited"] for r in records), "jsonl": str(jsonl), "parquet": str(parquet)}
    markdown = report_markdown(report)
    write_json_atomic(out / "report.json", json_safe(report))
    (out / "report.md").write_text(markdown, encoding="utf-8")
    if track:
        _track(report, markdown, out, experiment)
    return report


def _track(report: dict[str, Any], markdown: str, out: Path, experiment: str) -> None:
    from liquid_shared.tracking import start_run

    metrics: dict[str, float] = {"pairs": report["pairs"], "judged_pairs": report["judged_pairs"],
                                 "accepted_exported": report["exported"]["n"]}
    alpha = report["agreement"]["krippendorff_alpha"]["alpha"]
    if not math.isnan(alpha):
        metrics["krippendorff_alpha"] = alpha
    overall = report["validator"]["overall"]
    for name in ("precision", "recall", "f1"):
        if overall and not math.isnan(overall[name]):
            metrics[f"etl_{name}"] = overall[name]
    for ref_name, ref in report["references"].items():
        acc = ref["etl_against_reference"]
        for name in ("precision", "recall", "f1"):
            if acc and not math.isnan(acc[name]):
                metrics[f"etl_{name}_vs_{ref_name}"] = acc[name]
    with start_run(experiment, run_name=f"review-{Path(report['run']).name}",
                   params={"run_folder": report["run"], "n_boot": report["n_boot"], "reviewers": len(report["reviewers"])}) as tracked:
        tracked.log_metrics(metrics)
        tracked.log_dict(json_safe(report), "report.json")
        tracked.log_text(markdown, "report.md")
        for name in ("accepted.jsonl", "accepted.parquet"):
            tracked.log_artifact(out / name)
