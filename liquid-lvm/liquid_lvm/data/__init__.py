"""Ordered documents -> chunk embeddings -> document-disjoint splits -> context windows."""

from liquid_lvm.data.corpus import (
    SPLITS,
    ChunkCorpus,
    embed_documents,
    load_corpus,
    make_windows,
    prepare_corpus,
    save_corpus,
    split_documents,
    window_starts,
)
from liquid_lvm.data.documents import (
    REFERENCE_SECTIONS,
    LoadReport,
    OrderedDocument,
    load_documents,
)
from liquid_lvm.data.windows import WindowDataset

__all__ = ["REFERENCE_SECTIONS", "SPLITS", "ChunkCorpus", "LoadReport", "OrderedDocument", "WindowDataset", "embed_documents",
           "load_corpus", "load_documents", "make_windows", "prepare_corpus", "save_corpus", "split_documents",
           "window_starts"]
