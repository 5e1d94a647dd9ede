"""The review page over an ETL run folder: ``python -m rag_runtime review serve RUN``.

Routes (``/api/review/*`` need the ``X-API-Key`` header when a key is set):

* ``GET /review``: the page; ``GET /api/review/info``: the run, the reasons list, the overlap;
* ``POST /api/review/next`` ``{reviewer}``: the reviewer's next pair (no ETL verdict) and progress;
* ``POST /api/review/judgments`` ``{reviewer, qa_id, verdict, reasons, edited_answer}``: record a
  judgment; answers with the ETL's verdict on that pair (shown only now, after judging), the next
  pair and progress, in one round trip;
* ``POST /api/review/undo`` ``{reviewer}``: withdraw the reviewer's latest judgment; answers with
  that pair, to be judged again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from rag_runtime.pages.assets import key_checker, mount_static, offline_docs, page
from rag_runtime.pages.review_queue import DEFAULT_OVERLAP, DEFAULT_OVERLAP_REVIEWERS, ReviewQueue
from rag_runtime.pages.review_run import ReviewRun
from rag_runtime.pages.review_store import Reason, ReviewStore, Verdict

log = logging.getLogger("rag_runtime.review")
ReviewerName = Annotated[str, StringConstraints(pattern=r"^[\w][\w .@-]{0,39}$")]
MAX_EDIT_CHARS = 2000


class ReviewerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reviewer: ReviewerName = Field(description="The reviewer's name: 1-40 letters, digits, space, . @ - _")


class JudgmentRequest(ReviewerRequest):
    qa_id: str = Field(min_length=1, max_length=200)
    verdict: Verdict = Field(strict=False, description="accept, reject or skip")
    reasons: list[Annotated[Reason, Strict(False)]] = Field(default_factory=list, max_length=len(Reason),
                                  description="From the fixed list (GET /api/review/info).")
    edited_answer: str | None = Field(None, max_length=MAX_EDIT_CHARS,
                                      description="The answer as the reviewer would have it (None: unchanged).")


def default_db(run_folder: str | Path) -> Path:
    """Where a run's judgments go by default: ``<run>.review/judgments.sqlite`` beside the run folder
    (never inside it: the run folder is not modified)."""
    run = Path(run_folder).resolve()
    return run.parent / f"{run.name}.review" / "judgments.sqlite"


def create_review_app(run_folder: str | Path, db: str | Path | None = None, *, api_key: str | None = None,
                      overlap: float = DEFAULT_OVERLAP, overlap_reviewers: int = DEFAULT_OVERLAP_REVIEWERS) -> FastAPI:
    """The review page and its API over ``run_folder``, judgments in ``db`` (default ``default_db``)."""
    run = ReviewRun.load(run_folder)
    db_path = Path(db) if db is not None else default_db(run_folder)
    if db_path.resolve().is_relative_to(run.folder.resolve()):
        raise ValueError(f"the judgments database {db_path} is inside the run folder {run.folder}; "
                         "the run folder is never modified: choose a path outside it")
    store = ReviewStore(db_path)
    queue = ReviewQueue(list(run.pairs), overlap=overlap, overlap_reviewers=overlap_reviewers)
    app = FastAPI(title="Liquid QA review", version="0.1.0")
    require_key = Depends(key_checker(api_key))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        from rag_runtime.service import validation_message

        detail, errors = validation_message(list(exc.errors()))
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {detail}", "errors": errors})

    def next_and_progress(reviewer: str, exclude: set[str] = frozenset()) -> tuple[dict | None, dict]:
        standing = store.current_verdicts()  # read once per request
        qa_id = queue.next_for(reviewer, standing, exclude)
        return (None if qa_id is None else run.pairs[qa_id].to_page()), queue.progress(reviewer, standing)

    def progress(reviewer: str) -> dict:
        return queue.progress(reviewer, store.current_verdicts())

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/review")

    @app.get("/review", include_in_schema=False)
    def review_page():
        return page("review.html")

    @app.get("/api/review/info", dependencies=[require_key])
    def info() -> dict:
        return {"run": run.folder.name, "pairs": len(run.pairs), "reasons": [r.value for r in Reason],
                "verdicts": [v.value for v in Verdict], "overlap": overlap, "overlap_reviewers": overlap_reviewers,
                "auth": api_key is not None}

    @app.post("/api/review/next", dependencies=[require_key])
    def get_next(req: ReviewerRequest) -> dict:
        pair, done = next_and_progress(req.reviewer)
        return {"pair": pair, "progress": done}

    @app.post("/api/review/judgments", dependencies=[require_key])
    def judge(req: JudgmentRequest) -> dict:
        pair = run.pairs.get(req.qa_id)
        if pair is None:
            raise HTTPException(404, f"qa_id {req.qa_id!r} is not a pair of run {run.folder.name}")
        edited = req.edited_answer.strip() if req.edited_answer else None
        saved = store.record(req.reviewer, req.qa_id, req.verdict, [r.value for r in req.reasons],
                             edited if edited and edited != pair.answer else None)
        queue.release(req.qa_id, req.reviewer)
        following, done = next_and_progress(req.reviewer, {req.qa_id})
        return {"saved": saved.to_json(), "etl": pair.etl.to_json() if pair.etl else None,
                "next": following, "progress": done}

    @app.post("/api/review/undo", dependencies=[require_key])
    def undo(req: ReviewerRequest) -> dict:
        undone = store.undo_last(req.reviewer)
        if undone is None:
            raise HTTPException(409, f"reviewer {req.reviewer!r} has no judgment to undo")
        queue.lease(undone.qa_id, req.reviewer)
        return {"undone": undone.to_json(), "pair": run.pairs[undone.qa_id].to_page(),
                "progress": progress(req.reviewer)}

    mount_static(app)
    offline_docs(app)
    app.state.store, app.state.run, app.state.queue = store, run, queue
    return app
