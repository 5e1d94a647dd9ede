"""Load and write BEIR-format folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

The layout (Thakur et al., 2021)::

    corpus.jsonl      {"_id": "4983", "title": "...", "text": "..."}   one document a line
    queries.jsonl     {"_id": "1", "text": "..."}                       one query a line
    qrels/test.tsv    query-id<TAB>corpus-id<TAB>score                  header line, then judgments

``load_beir`` checks everything it reads and raises ``BeirFormatError`` (a ``ValueError``) naming
the file, the line and the problem: invalid JSON or UTF-8, a missing or empty ``_id``, a
missing ``text``, a duplicate id or judgment, a wrong column count, a non-integer score, a qrels
line whose query or document id is not in the other files, an empty file. Blank lines are
skipped. Like BEIR's own loader it keeps every judgment, including score 0, and keeps only the
queries that have judgments in the split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")


class BeirFormatError(ValueError):
    """A BEIR file is malformed. ``path``, ``line`` (1-based, None for the whole file), ``problem``."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}" if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class BeirDoc:
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and text on separate lines, stripped (just the text when there is no title)."""
        return f"{self.title}\n{self.text}".strip()


@dataclass(repr=False)
class BeirDataset:
    """One split of a BEIR dataset. ``queries`` and ``qrels`` share the order of the qrels file."""

    name: str
    corpus: dict[str, BeirDoc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str = "test"
    folder: Path | None = field(default=None)

    @property
    def n_judgments(self) -> int:
        return sum(len(judged) for judged in self.qrels.values())

    def __repr__(self) -> str:
        return (f"BeirDataset(name={self.name!r}, split={self.split!r}, docs={len(self.corpus)}, "
                f"queries={len(self.queries)}, judgments={self.n_judgments})")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines of a UTF-8 file with their 1-based numbers (a leading BOM is dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (a BEIR folder has {CORPUS_FILE}, {QUERIES_FILE} "
                                f"and {QRELS_DIR}/<split>.tsv)")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BeirFormatError(path, lineno, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if line.strip():
                yield lineno, line


def _as_id(value: object, path: Path, lineno: int, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BeirFormatError(path, lineno, f'"{key}" must be a string, got {json.dumps(value)}')
    text = str(value).strip()
    if not text:
        raise BeirFormatError(path, lineno, f'"{key}" is empty')
    return text


def _read_records(path: Path) -> Iterator[tuple[int, str, dict]]:
    """(line number, id, object) for each record of a BEIR JSONL file, rejecting duplicate ids."""
    first_line: dict[str, int] = {}
    for lineno, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BeirFormatError(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise BeirFormatError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        if "_id" not in obj:
            raise BeirFormatError(path, lineno, 'missing "_id"')
        rid = _as_id(obj["_id"], path, lineno, "_id")
        if rid in first_line:
            raise BeirFormatError(path, lineno, f"duplicate _id {rid!r} (first on line {first_line[rid]})")
        first_line[rid] = lineno
        if not isinstance(obj.get("text"), str):
            problem = 'missing "text"' if "text" not in obj else f'"text" must be a string, got {json.dumps(obj["text"])}'
            raise BeirFormatError(path, lineno, problem)
        yield lineno, rid, obj
    if not first_line:
        raise BeirFormatError(path, None, "file is empty (no records)")


def read_corpus(path: Path | str) -> dict[str, BeirDoc]:
    path = Path(path)
    corpus = {}
    for lineno, rid, obj in _read_records(path):
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise BeirFormatError(path, lineno, f'"title" must be a string, got {json.dumps(title)}')
        corpus[rid] = BeirDoc(title=title, text=obj["text"])
    return corpus


def read_queries(path: Path | str) -> dict[str, str]:
    return {rid: obj["text"] for _, rid, obj in _read_records(Path(path))}


def read_qrels(path: Path | str, queries: Mapping[str, str] | None = None,
               corpus: Mapping[str, BeirDoc] | None = None, strict: bool = True) -> dict[str, dict[str, int]]:
    """Read ``qrels/<split>.tsv``. Ids are checked against ``queries``/``corpus`` when given.

    With ``strict=False`` judgments whose ids are unknown are dropped (and counted in a warning)
    instead of raising.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    dropped = 0
    for lineno, line in _lines(path):
        fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
        if not first_line and tuple(f.lower() for f in fields) == QRELS_HEADER:
            continue
        if len(fields) != 3:
            raise BeirFormatError(path, lineno, f"expected 3 tab-separated columns (query-id, corpus-id, score), "
                                                f"found {len(fields)}")
        qid, did, raw_score = fields
        if not qid or not did:
            raise BeirFormatError(path, lineno, f"empty {'query-id' if not qid else 'corpus-id'}")
        try:
            score = int(raw_score)
        except ValueError:
            raise BeirFormatError(path, lineno, f"score {raw_score!r} is not an integer") from None
        unknown = None
        if queries is not None and qid not in queries:
            unknown = f"query-id {qid!r} is not in {QUERIES_FILE}"
        elif corpus is not None and did not in corpus:
            unknown = f"corpus-id {did!r} is not in {CORPUS_FILE}"
        if unknown:
            if strict:
                raise BeirFormatError(path, lineno, unknown)
            dropped += 1
            continue
        if (qid, did) in first_line:
            raise BeirFormatError(path, lineno, f"duplicate judgment for query {qid!r}, document {did!r} "
                                                f"(first on line {first_line[qid, did]})")
        first_line[qid, did] = lineno
        qrels.setdefault(qid, {})[did] = score
    if dropped:
        log.warning("%s: dropped %d judgments whose query or document id is unknown", path, dropped)
    if not qrels:
        raise BeirFormatError(path, None, "file is empty (no judgments)")
    return qrels


def available_splits(folder: Path | str) -> list[str]:
    return sorted(p.stem for p in (Path(folder) / QRELS_DIR).glob("*.tsv"))


def load_beir(folder: Path | str, split: str = "test", strict: bool = True) -> BeirDataset:
    """Load one split of a BEIR folder, checking every line (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BEIR folder {folder} does not exist")
    qrels_path = folder / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(folder)
        raise FileNotFoundError(f"{qrels_path}: no qrels for split {split!r}; "
                                f"available splits: {', '.join(splits) if splits else 'none'}")
    corpus = read_corpus(folder / CORPUS_FILE)
    all_queries = read_queries(folder / QUERIES_FILE)
    qrels = read_qrels(qrels_path, queries=all_queries, corpus=corpus, strict=strict)
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(name=folder.name, corpus=corpus, queries=queries, qrels=qrels, split=split, folder=folder)


def _doc_record(doc_id: str, doc: BeirDoc | Mapping | str) -> dict[str, str]:
    if isinstance(doc, BeirDoc):
        return {"_id": doc_id, "title": doc.title, "text": doc.text}
    if isinstance(doc, str):
        return {"_id": doc_id, "title": "", "text": doc}
    if isinstance(doc, Mapping):
        return {"_id": doc_id, "title": doc.get("title", ""), "text": doc["text"]}
    raise TypeError(f"corpus[{doc_id!r}]: expected BeirDoc, dict with 'text' or str, got {type(doc).__name__}")


def write_beir(folder: Path | str, corpus: Mapping[str, BeirDoc | Mapping | str], queries: Mapping[str, str],
               qrels: Mapping[str, Mapping[str, int]], split: str = "test") -> Path:
    """Write a BEIR folder (for tests and small generated sets). Writes what it is given: no checks."""
    folder = Path(folder)
    (folder / QRELS_DIR).mkdir(parents=True, exist_ok=True)
    with (folder / CORPUS_FILE).open("w", encoding="utf-8") as fh:
        for doc_id, doc in corpus.items():
            fh.write(json.dumps(_doc_record(doc_id, doc), ensure_ascii=False) + "\n")
    with (folder / QUERIES_FILE).open("w", encoding="utf-8") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with (folder / QRELS_DIR / f"{split}.tsv").open("w", encoding="utf-8") as fh:
        fh.write("\t".join(QRELS_HEADER) + "\n")
        for qid, judged in qrels.items():
            for doc_id, score in judged.items():
                fh.write(f"{qid}\t{doc_id}\t{int(score)}\n")
    return folder
