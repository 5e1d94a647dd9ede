"""Evaluation data sets: BEIR folders (``load_beir``, ``write_beir``), SQuAD as a retrieval set (``load_squad_retrieval``)."""

from liquid_shared.data.beir import (
    BeirDataset,
    BeirDoc,
    BeirFormatError,
    available_splits,
    load_beir,
    read_corpus,
    read_qrels,
    read_queries,
    write_beir,
)
from liquid_shared.data.squad import SquadFormatError, load_squad_retrieval

__all__ = ["BeirDataset", "BeirDoc", "BeirFormatError", "available_splits", "load_beir", "read_corpus",
           "read_qrels", "read_queries", "write_beir", "SquadFormatError", "load_squad_retrieval"]
