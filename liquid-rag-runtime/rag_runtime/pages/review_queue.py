"""Which pair a reviewer sees next.

* Pairs are shown in a fixed pseudo-random order (a hash of the pair id), so every reviewer and
  every restart agrees on it and no document's pairs come in one block.
* A share ``overlap`` of the pairs (again chosen by hash, so the choice is stable) must be judged
  by ``overlap_reviewers`` people; the rest by one. Overlap pairs are what agreement is measured on.
* A reviewer gets the first pair in that order that they have not judged (a skip counts as judged
  for them, not for the pair) and that still lacks judges, counting reviewers who were handed it in
  the last ``lease_s`` seconds and have not answered yet, so two people at once are not given the
  same pair when it needs one judge. When nothing is left but pairs leased to others, those come
  next (a lease can be abandoned). ``None``: this reviewer is done.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict

DEFAULT_OVERLAP = 0.2
DEFAULT_OVERLAP_REVIEWERS = 2
DEFAULT_LEASE_S = 600.0


def _unit(qa_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{qa_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ReviewQueue:
    def __init__(self, qa_ids: list[str], overlap: float = DEFAULT_OVERLAP,
                 overlap_reviewers: int = DEFAULT_OVERLAP_REVIEWERS, lease_s: float = DEFAULT_LEASE_S):
        if not 0 <= overlap <= 1:
            raise ValueError(f"overlap must be a share between 0 and 1, got {overlap}")
        if overlap_reviewers < 2:
            raise ValueError(f"overlap_reviewers must be at least 2, got {overlap_reviewers}")
        self.order = sorted(qa_ids, key=lambda q: _unit(q, "order"))
        self.required = {q: overlap_reviewers if _unit(q, "overlap") < overlap else 1 for q in qa_ids}
        self.overlap, self.overlap_reviewers, self.lease_s = overlap, overlap_reviewers, lease_s
        self._leases: dict[str, dict[str, float]] = defaultdict(dict)  # qa_id -> reviewer -> time handed out
        self._lock = threading.Lock()

    def lease(self, qa_id: str, reviewer: str) -> None:
        with self._lock:
            self._leases[qa_id][reviewer] = time.monotonic()

    def release(self, qa_id: str, reviewer: str) -> None:
        with self._lock:
            self._leases.get(qa_id, {}).pop(reviewer, None)

    def next_for(self, reviewer: str, standing: list[tuple[str, str, str]], exclude: set[str] = frozenset()) -> str | None:
        """The next pair for ``reviewer`` given every standing ``(reviewer, qa_id, verdict)``; leases it."""
        judged_by_me: set[str] = set()
        judges: dict[str, set[str]] = defaultdict(set)
        for who, qa_id, verdict in standing:
            if who == reviewer:
                judged_by_me.add(qa_id)
            if verdict != "skip":
                judges[qa_id].add(who)
        now = time.monotonic()
        with self._lock:
            fallback = None
            for qa_id in self.order:
                if qa_id in judged_by_me or qa_id in exclude:
                    continue
                have = judges.get(qa_id, set())
                if len(have) >= self.required[qa_id]:
                    continue
                leased = {r for r, t in self._leases.get(qa_id, {}).items()
                          if r != reviewer and now - t < self.lease_s and r not in have}
                if len(have) + len(leased) < self.required[qa_id]:
                    self._leases[qa_id][reviewer] = now
                    return qa_id
                if fallback is None:
                    fallback = qa_id
            if fallback is not None:
                self._leases[fallback][reviewer] = now
            return fallback

    def progress(self, reviewer: str, standing: list[tuple[str, str, str]]) -> dict[str, int | float]:
        judges: dict[str, set[str]] = defaultdict(set)
        mine = 0
        for who, qa_id, verdict in standing:
            if who == reviewer:
                mine += 1
            if verdict != "skip":
                judges[qa_id].add(who)
        complete = sum(1 for q, need in self.required.items() if len(judges.get(q, ())) >= need)
        return {"mine": mine, "complete": complete, "total": len(self.order),
                "overlap_pairs": sum(1 for n in self.required.values() if n > 1),
                "judgments": len(standing)}
