"""SQuAD's human answers as a stand-in reviewer of an ETL run made from SQuAD paragraphs.

A pair is *accepted* by this reference when its answer has SQuAD token F1 >= ``threshold``
(default 0.5, chosen a priori) with at least one human answer of any answerable question of the
pair's paragraph, else *rejected*. It judges whether the answer is one a person picked from the
paragraph, not whether the question is good: a stand-in, not a reviewer.

A pair's paragraph is found by its document's source name when it is the experiments' naming
``a<article>_p<paragraph>`` (``experiments.squad_eval``), else by text: the paragraph whose
(whitespace-normalised) context contains the chunk's text, or the other way round. Pairs whose
paragraph is not found get no verdict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from liquid_shared.metrics.generation import token_f1
from rag_runtime.pages.review_run import ReviewRun

SQUAD_REFERENCE = "squad-human-answers"
DEFAULT_F1 = 0.5
_KEY = re.compile(r"^a(\d+)_p(\d+)$")


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def load_squad_paragraphs(path: str | Path) -> list[tuple[int, int, str, list[str]]]:
    """``(article, paragraph, context, human answers)`` of every paragraph of a SQuAD v2.0 file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        out = []
        for ai, article in enumerate(data):
            for pi, para in enumerate(article["paragraphs"]):
                answers = [a["text"] for q in para["qas"] if not q.get("is_impossible") for a in q["answers"]]
                out.append((ai, pi, para["context"], answers))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a SQuAD v2.0 file (data[].paragraphs[].context/qas): {exc}") from None
    return out


def squad_reference(run: ReviewRun, squad_path: str | Path, threshold: float = DEFAULT_F1) -> dict[str, str]:
    """``{qa_id: "accept" | "reject"}`` for the pairs of ``run`` whose SQuAD paragraph is found."""
    paragraphs = load_squad_paragraphs(squad_path)
    by_key = {(ai, pi): answers for ai, pi, _, answers in paragraphs}
    by_text = [(_norm(context), answers) for _, _, context, answers in paragraphs]
    verdicts: dict[str, str] = {}
    for qa_id, pair in run.pairs.items():
        answers = None
        m = _KEY.match(Path(pair.source).stem) if pair.source else None
        if m:
            answers = by_key.get((int(m.group(1)), int(m.group(2))))
        if answers is None:
            chunk = _norm(pair.chunk)
            for context, cand in by_text:
                if chunk and (chunk in context or context in chunk):
                    answers = cand
                    break
        if not answers:
            continue
        verdicts[qa_id] = "accept" if token_f1(pair.answer, answers) >= threshold else "reject"
    return verdicts
