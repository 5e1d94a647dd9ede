"""Judgments of the review page in SQLite: an append-only history and the current verdicts.

* ``judgments``: one row per reviewer x pair x time (accept, reject, skip, or ``undo`` of an
  earlier row); never updated or deleted, so every decision and its revision stays on record.
* ``current``: the latest standing judgment of each reviewer on each pair (the row it came from);
  an undo removes the reviewer's row here. Written in the same transaction as the history.
* WAL journal, one connection per thread, ``BEGIN IMMEDIATE`` for writes and a busy timeout, so
  reviewers writing at once queue on SQLite's write lock and no write is lost.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 10_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reviewer TEXT NOT NULL,
    qa_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'skip', 'undo')),
    reasons TEXT NOT NULL DEFAULT '[]',
    edited_answer TEXT,
    undoes INTEGER REFERENCES judgments(id),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS judgments_by_pair ON judgments (qa_id, reviewer);
CREATE TABLE IF NOT EXISTS current (
    reviewer TEXT NOT NULL,
    qa_id TEXT NOT NULL,
    judgment_id INTEGER NOT NULL REFERENCES judgments(id),
    verdict TEXT NOT NULL,
    PRIMARY KEY (reviewer, qa_id)
);
CREATE INDEX IF NOT EXISTS current_by_reviewer ON current (reviewer, judgment_id);
"""


class Verdict(str, Enum):
    accept = "accept"
    reject = "reject"
    skip = "skip"


class Reason(str, Enum):
    """The fixed list of reasons a reviewer may give (any verdict; usually a rejection)."""

    wrong_answer = "wrong answer"
    not_answerable = "not answerable from the passage"
    gives_away = "gives the answer away"
    ungrammatical = "ungrammatical"
    trivial = "trivial"


@dataclass(frozen=True)
class Judgment:
    id: int
    reviewer: str
    qa_id: str
    verdict: str
    reasons: list[str]
    edited_answer: str | None
    created_at: str
    undoes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "reviewer": self.reviewer, "qa_id": self.qa_id, "verdict": self.verdict,
                "reasons": self.reasons, "edited_answer": self.edited_answer, "created_at": self.created_at,
                "undoes": self.undoes}


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _row(r: tuple) -> Judgment:
    return Judgment(id=r[0], reviewer=r[1], qa_id=r[2], verdict=r[3], reasons=json.loads(r[4]),
                    edited_answer=r[5], created_at=r[6], undoes=r[7])


_COLUMNS = "id, reviewer, qa_id, verdict, reasons, edited_answer, created_at, undoes"


class ReviewStore:
    """The judgments database at ``path`` (created with its folder if missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._connection()
        con.executescript(SCHEMA)
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite could not switch to WAL mode (got {mode!r}); "
                               "keep the database on a local disk")

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                  check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def record(self, reviewer: str, qa_id: str, verdict: Verdict | str, reasons: Iterable[str] = (),
               edited_answer: str | None = None) -> Judgment:
        """Append a judgment and make it the reviewer's current one on the pair."""
        verdict = Verdict(verdict).value
        reasons = [Reason(r).value for r in reasons]
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            created = _now()
            cur = con.execute(
                "INSERT INTO judgments (reviewer, qa_id, verdict, reasons, edited_answer, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (reviewer, qa_id, verdict, json.dumps(reasons), edited_answer, created))
            jid = cur.lastrowid
            con.execute("INSERT INTO current (reviewer, qa_id, judgment_id, verdict) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (reviewer, qa_id) DO UPDATE SET judgment_id = excluded.judgment_id, "
                        "verdict = excluded.verdict", (reviewer, qa_id, jid, verdict))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return Judgment(jid, reviewer, qa_id, verdict, reasons, edited_answer, created)

    def undo_last(self, reviewer: str) -> Judgment | None:
        """Withdraw the reviewer's latest standing judgment (recorded as an ``undo`` row); returns the
        judgment withdrawn, or None when the reviewer has none."""
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT judgment_id FROM current WHERE reviewer = ? ORDER BY judgment_id DESC LIMIT 1",
                              (reviewer,)).fetchone()
            if row is None:
                con.execute("COMMIT")
                return None
            undone = _row(con.execute(f"SELECT {_COLUMNS} FROM judgments WHERE id = ?", (row[0],)).fetchone())
            con.execute("INSERT INTO judgments (reviewer, qa_id, verdict, undoes, created_at) VALUES (?, ?, 'undo', ?, ?)",
                        (reviewer, undone.qa_id, undone.id, _now()))
            con.execute("DELETE FROM current WHERE reviewer = ? AND qa_id = ?", (reviewer, undone.qa_id))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return undone

    def current(self) -> list[Judgment]:
        """Every standing judgment (one per reviewer and pair), oldest first."""
        rows = self._connection().execute(
            f"SELECT {', '.join('j.' + c.strip() for c in _COLUMNS.split(','))} FROM current c "
            "JOIN judgments j ON j.id = c.judgment_id ORDER BY j.id").fetchall()
        return [_row(r) for r in rows]

    def current_verdicts(self) -> list[tuple[str, str, str]]:
        """``(reviewer, qa_id, verdict)`` of every standing judgment (cheap: no join)."""
        return self._connection().execute("SELECT reviewer, qa_id, verdict FROM current").fetchall()

    def history(self, reviewer: str | None = None, qa_id: str | None = None) -> list[Judgment]:
        """Every row ever written (undos included), oldest first, optionally for one reviewer/pair."""
        where, args = [], []
        if reviewer is not None:
            where.append("reviewer = ?")
            args.append(reviewer)
        if qa_id is not None:
            where.append("qa_id = ?")
            args.append(qa_id)
        sql = f"SELECT {_COLUMNS} FROM judgments" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return [_row(r) for r in self._connection().execute(sql, args).fetchall()]

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
