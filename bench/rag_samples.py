"""The shipped samples (``data/samples``) as a rag_runtime index, for the answer and load benchmarks.

The ETL's loaders and chunker (no LLM stage) write a ``chunks.jsonl`` into a folder, which
``rag_runtime.build_index`` then indexes (BM25 + FAISS over all-MiniLM-L6-v2). The chunks are the
ones ``make run`` indexes; only the LLM metadata is missing, which retrieval and answers do not use.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def sample_chunks_run(out: Path, samples: Path = SAMPLES) -> Path:
    """Write ``out/chunks.jsonl`` (an ETL-run-shaped folder) from the documents of ``samples``."""
    from etl_pipeline import EtlConfig, build_chunks, discover_sources, load_document
    from liquid_shared.schemas import write_jsonl

    config = EtlConfig(input_dir=samples)
    chunks = []
    for item in discover_sources(samples):
        doc = load_document(item, max_bytes=int(config.max_file_mb * 1e6), jsonl_text_field=config.jsonl_text_field)
        chunks += build_chunks(doc, max_tokens=config.max_chunk_tokens, min_tokens=config.min_chunk_tokens,
                               max_chunks=config.max_chunks_per_doc).chunks
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "chunks.jsonl", chunks)
    return out


def samples_index(folder: Path, samples: Path = SAMPLES):
    """The samples' ``RagIndex``, built into ``folder/index`` (loaded if it is already there)."""
    from rag_runtime import RagIndex, build_index

    index_dir = folder / "index"
    if (index_dir / "manifest.json").is_file():
        return RagIndex.load(index_dir)
    return build_index(sample_chunks_run(folder / "run", samples), index_dir)
