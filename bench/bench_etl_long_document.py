"""Long documents: characters kept (old default cap vs the whole document) and peak memory.

    python bench/bench_etl_long_document.py                 # both parts
    python bench/bench_etl_long_document.py --skip-memory   # only the characters kept (no model)

1. *Characters kept*: generated chapters of textbook sizes (40 KB to 132,404 characters)
   are chunked with the old defaults (``max_chunks_per_doc=48``, which also cut the text at
   61,440 characters before chunking) and with the new default (no cap). Counts the characters
   inside chunks (the blank lines between chunks are the only text outside one).
2. *Peak memory*: the real runner in a fresh subprocess per case (LLM stages off, so every
   stage uses its non-LLM fallback; the real MiniLM embedder, shards, merge and index), on a
   short text and on a long one, with chunk windows of 32 (the default) and unbounded. Peak RSS
   is the subprocess's ``ru_maxrss`` (report.json ``memory.peak_rss_bytes``).

Prints markdown tables and writes ``data/runs/bench_etl_long_document.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for pkg in ("liquid-shared-core", "liquid-etl-pipeline"):
    sys.path.insert(0, str(REPO / pkg))

from etl_pipeline.chunking import build_chunks  # noqa: E402
from liquid_shared.schemas import Document  # noqa: E402


def chapter(n_chars: int) -> str:
    """A textbook-like chapter: headings, paragraphs of distinct sentences, about ``n_chars`` long."""
    parts, i = [], 0
    while sum(len(p) for p in parts) < n_chars:
        if i % 40 == 0:
            parts.append(f"# Section {i // 40 + 1}\n\n")
        parts.append(" ".join(
            f"Sentence {i}.{k} explains how a price of {i * 7 + k} units clears the market for good {i % 97}." for k in range(4)
        ) + "\n\n")
        i += 1
    return "".join(parts)[:n_chars]


def kept(text: str, max_chunks: int | None) -> dict:
    doc = Document(doc_id="d", source="chapter.md", title="", text=text, content_hash="h", mime="text/markdown")
    result = build_chunks(doc, max_tokens=160, min_tokens=24, max_chunks=max_chunks)
    inside = sum(c.end_char - c.start_char for c in result.chunks)
    return {"chunks": len(result.chunks), "chars_in_chunks": inside, "chars_lost": len(text) - result.chunks[-1].end_char}


_CHILD = """
import json, sys
from pathlib import Path
from etl_pipeline import EtlConfig, run
cfg = EtlConfig(input_dir=sys.argv[1], output_dir=sys.argv[2], stages=(), chunk_window=int(sys.argv[3]), concurrency=16)
result = run(cfg, track=False)
print(json.dumps({"exit": result.exit_code, "chunks": result.report["counts"]["chunks"],
                  "peak_rss_bytes": result.report["memory"]["peak_rss_bytes"],
                  "most_in_flight": result.report["this_run"]["most_chunks_in_flight_per_document"]}))
"""


def memory_case(n_chars: int, window: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        (docs / "book.md").write_text(chapter(n_chars), encoding="utf-8")
        env_path = ":".join(str(REPO / p) for p in ("liquid-shared-core", "liquid-etl-pipeline"))
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(docs), str(Path(tmp) / "run"), str(window)],
            capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": env_path}, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--long-chars", type=int, default=200_000)
    ap.add_argument("--windows", default="32,1000000", help="Comma-separated chunk windows to measure.")
    args = ap.parse_args()
    rows = []
    for size in (40_000, 61_440, 100_000, 132_404):
        text = chapter(size)
        rows.append({"chars": size, "old_default_cap_48": kept(text, 48), "whole_document": kept(text, None)})
    print("| chapter chars | old default: chunks / chars lost | new default: chunks / chars lost |")
    print("|---|---|---|")
    for r in rows:
        o, n = r["old_default_cap_48"], r["whole_document"]
        print(f"| {r['chars']:,} | {o['chunks']} / {o['chars_lost']:,} | {n['chunks']} / {n['chars_lost']:,} |")
    memory = []
    if not args.skip_memory:
        for n_chars in (2_000, args.long_chars):
            for window in (int(w) for w in args.windows.split(",")):
                res = memory_case(n_chars, window)
                memory.append({"chars": n_chars, "chunk_window": window, **res})
        print("\n| text chars | chunk window | chunks | most chunks in flight | peak RSS MiB |")
        print("|---|---|---|---|---|")
        for m in memory:
            print(f"| {m['chars']:,} | {m['chunk_window']} | {m['chunks']} | {m['most_in_flight']} | {m['peak_rss_bytes'] / 2**20:.0f} |")
    out = REPO / "data" / "runs" / "bench_etl_long_document.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"characters_kept": rows, "memory": memory}, indent=2) + "\n")


if __name__ == "__main__":
    main()
