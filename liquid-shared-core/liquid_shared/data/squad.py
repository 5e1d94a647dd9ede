"""SQuAD (v1.1 or v2.0 JSON) as a retrieval set: each answerable question -> the paragraph it was asked on.

The corpus is every paragraph (id ``<article index>-<paragraph index>``, title = the article's
title); queries are the answerable questions (``is_impossible`` ones are skipped: they have no
answer in their paragraph, although they were written about it); each query has one relevant
document, grade 1. Returned as a ``BeirDataset`` so the BEIR tooling scores it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from liquid_shared.data.beir import BeirDataset, BeirDoc


class SquadFormatError(ValueError):
    """A SQuAD file is malformed; the message names the file and the problem."""


def load_squad_retrieval(path: Path | str, include_impossible: bool = False) -> BeirDataset:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD file {path} not found")
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SquadFormatError(f"{path}: not a SQuAD JSON file with a 'data' list ({exc})") from None
    corpus: dict[str, BeirDoc] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for a, article in enumerate(articles):
        for p, para in enumerate(article.get("paragraphs", [])):
            if not isinstance(para.get("context"), str):
                raise SquadFormatError(f"{path}: article {a} paragraph {p} has no string 'context'")
            doc_id = f"{a}-{p}"
            corpus[doc_id] = BeirDoc(title=str(article.get("title", "")).replace("_", " "), text=para["context"])
            for qa in para.get("qas", []):
                if qa.get("is_impossible") and not include_impossible:
                    continue
                qid = str(qa["id"])
                queries[qid] = qa["question"]
                qrels[qid] = {doc_id: 1}
    if not qrels:
        raise SquadFormatError(f"{path}: no answerable question")
    return BeirDataset(name=path.stem, corpus=corpus, queries=queries, qrels=qrels, split="squad", folder=path.parent)
