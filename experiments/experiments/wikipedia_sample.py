"""A seeded sample of the shared Wikipedia articles, written as ETL input (one JSONL record each).

The shared ``wikipedia/articles.jsonl`` stores an article as a list of paragraphs with their
section names; the ETL's JSONL loader reads one ``text`` field per record. ``write_article_sample``
draws ``n`` articles with ``random.Random(seed)`` and joins each one's paragraphs into Markdown-ish
text (a ``## section`` line where the section changes), so the same seed always gives the same file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path


def article_text(record: dict) -> str:
    """An article record's paragraphs as one text, with a heading line wherever the section changes."""
    parts: list[str] = []
    section = ""
    for paragraph in record.get("paragraphs") or []:
        name = str(paragraph.get("section") or "")
        if name and name != section:
            parts.append(f"## {name}")
        section = name
        text = str(paragraph.get("text") or "").strip()
        if text:
            parts.append(text)
    return "\n\n".join(parts)


def write_article_sample(articles: Path, out_dir: Path, n: int, seed: int) -> Path:
    """Write ``n`` seeded articles of ``articles`` (JSONL) to ``out_dir/articles.jsonl``; returns that file."""
    records = []
    with Path(articles).open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{articles}:{lineno}: not a JSON record ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("paragraphs"), list):
                raise ValueError(f"{articles}:{lineno}: an article needs a 'paragraphs' list")
            records.append(record)
    if n > len(records):
        raise ValueError(f"{articles} holds {len(records)} articles, fewer than the {n} asked for")
    chosen = random.Random(seed).sample(records, n)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "articles.jsonl"
    lines = [json.dumps({"title": r.get("title", ""), "text": article_text(r), "id": r.get("id", ""),
                         "url": r.get("url", ""), "license": r.get("license", "")}, ensure_ascii=False)
             for r in chosen]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
