"""Pages in a browser: the search and ask page of the service (``/ui``) and the review page of an
ETL run's QA pairs, with the review report (agreement, the ETL's verdict against people).

    from rag_runtime.pages import create_review_app, write_report
    app = create_review_app("data/runs/samples-offline")          # then: uvicorn.run(app)

Static files (HTML, JS, CSS) are package data under ``pages/static``; nothing is loaded from a CDN.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "mount_search_page": "rag_runtime.pages.search_page",
    "create_review_app": "rag_runtime.pages.review_app",
    "default_db": "rag_runtime.pages.review_app",
    "ReviewRun": "rag_runtime.pages.review_run",
    "ReviewRunError": "rag_runtime.pages.review_run",
    "answer_span": "rag_runtime.pages.review_run",
    "ReviewStore": "rag_runtime.pages.review_store",
    "Reason": "rag_runtime.pages.review_store",
    "Verdict": "rag_runtime.pages.review_store",
    "ReviewQueue": "rag_runtime.pages.review_queue",
    "cohen_kappa": "rag_runtime.pages.agreement",
    "krippendorff_alpha": "rag_runtime.pages.agreement",
    "verdict_accuracy": "rag_runtime.pages.agreement",
    "build_report": "rag_runtime.pages.review_report",
    "write_report": "rag_runtime.pages.review_report",
    "accepted_records": "rag_runtime.pages.review_report",
    "squad_reference": "rag_runtime.pages.squad_answers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag_runtime.pages' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
