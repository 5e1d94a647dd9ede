"""Structure-aware chunking under a token budget: sections, then paragraphs, then sentences.

1. ``segment_document`` reads the light-Markdown text every loader produces: ``#`` headings give
   each paragraph its section path, fenced code blocks and list items stay whole, and paragraphs
   are split into sentences (Punkt). Each sentence is a *unit* with its character span and its
   token count.
2. ``pack_sections`` fills chunks with whole units inside one section, balancing the chunks of a
   section (a 1.1-budget section becomes two halves, not a full chunk and a scrap) and preferring
   to end a chunk where a paragraph ends. Optional *break hints* (from the LLM boundary agent)
   start a new chunk at a given unit once the current one has ``min_tokens``.
3. Sections smaller than ``min_tokens`` merge with a neighbour when both fit; the merged chunk's
   section path is the common prefix of the two.

A sentence is never cut, with one exception: a single sentence longer than the whole budget
(a table flattened into one line, a file without punctuation) is split at whitespace and its
pieces are marked ``hard_split``; the boundary report counts them.

Long documents are chunked whole by default (``max_chunks=None``). Only when a cap is asked for
are just the first ``max_chunks`` chunks kept; the text is then first cut near
``max_chunks * max_tokens * 8`` characters so a 20 MB file is never segmented whole. Both are
reported as a truncation.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from etl_pipeline.sentences import sentence_spans
from etl_pipeline.token_counter import TokenCounter, default_token_counter
from liquid_shared.schemas import Chunk, Document

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_TERMINAL = tuple('.!?…:;"”’)]')
_CHARS_PER_TOKEN_CAP = 8


@dataclass
class Unit:
    """A sentence (or an atomic block: a code fence, a list item) with its span in the text."""

    start: int
    end: int
    tokens: int = 0
    paragraph_start: bool = False
    hard_split: bool = False


@dataclass
class Section:
    path: tuple[str, ...]
    units: list[Unit] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(u.tokens for u in self.units)


@dataclass
class Segmentation:
    sections: list[Section]
    truncated_chars: int = 0
    """Characters dropped before segmenting (0 when the text was small enough)."""

    @property
    def units(self) -> list[Unit]:
        return [u for s in self.sections for u in s.units]


@dataclass(frozen=True)
class ChunkingResult:
    chunks: list[Chunk]
    truncated: bool
    warnings: list[str]


def _paragraph_blocks(text: str) -> Iterable[tuple[str, int, int, tuple[str, ...]]]:
    """Yield ``(kind, start, end, section_path)`` for each block; kind is 'para' or 'atomic'."""
    path: list[str] = []
    pos = 0
    block_start: int | None = None
    in_fence = False
    fence_start = 0
    lines = text.split("\n")
    offsets = []
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1

    def close(end: int):
        nonlocal block_start
        if block_start is not None and text[block_start:end].strip():
            yield ("para", block_start, end, tuple(path))
        block_start = None

    for line, start in zip(lines, offsets, strict=True):
        end = start + len(line)
        if in_fence:
            if _FENCE.match(line):
                in_fence = False
                yield ("atomic", fence_start, end, tuple(path))
            continue
        if _FENCE.match(line):
            yield from close(start)
            in_fence, fence_start = True, start
            continue
        heading = _HEADING.match(line)
        if heading:
            yield from close(start)
            level = len(heading.group(1))
            path[:] = [*path[: level - 1], heading.group(2).strip()]
            continue
        if not line.strip():
            yield from close(start)
            continue
        if _LIST_ITEM.match(line):
            yield from close(start)
            yield ("atomic", start, end, tuple(path))
            continue
        if block_start is None:
            block_start = start
    if in_fence:  # an unclosed fence runs to the end
        yield ("atomic", fence_start, len(text), tuple(path))
    yield from close(len(text))


def _split_oversized(text: str, unit: Unit, counter: TokenCounter, budget: int) -> list[Unit]:
    """Split one over-budget unit at whitespace (or mid-word if it has none) into pieces under budget."""
    if unit.tokens <= budget:
        return [unit]
    piece = text[unit.start : unit.end]
    mid = len(piece) // 2
    cut = piece.rfind(" ", 0, mid)
    if cut <= 0:
        cut = piece.find(" ", mid)
    if cut <= 0:
        cut = mid
    left = Unit(unit.start, unit.start + cut, paragraph_start=unit.paragraph_start, hard_split=True)
    right_start = unit.start + cut
    while right_start < unit.end and text[right_start].isspace():
        right_start += 1
    right = Unit(right_start, unit.end, hard_split=True)
    left.tokens, right.tokens = counter.count_many([text[left.start : left.end], text[right.start : right.end]])
    return _split_oversized(text, left, counter, budget) + _split_oversized(text, right, counter, budget)


def segment_document(
    text: str, *, max_tokens: int, max_chunks: int | None = None, counter: TokenCounter | None = None
) -> Segmentation:
    """Split ``text`` into sections of sentence units with token counts (all of it unless ``max_chunks``)."""
    counter = counter or default_token_counter()
    cap = max_chunks * max_tokens * _CHARS_PER_TOKEN_CAP if max_chunks else len(text)
    truncated = 0
    if len(text) > cap:
        cut = text.rfind("\n\n", 0, cap)
        if cut < cap // 2:
            cut = cap
        truncated = len(text) - cut
        text = text[:cut]
    sections: list[Section] = []
    for kind, start, end, path in _paragraph_blocks(text):
        if not sections or sections[-1].path != path:
            sections.append(Section(path=path))
        if kind == "atomic":
            spans = [(start, end)]
        else:
            spans = [(start + s, start + e) for s, e in sentence_spans(text[start:end])]
        for i, (s, e) in enumerate(spans):
            sections[-1].units.append(Unit(s, e, paragraph_start=i == 0))
    units = [u for s in sections for u in s.units]
    for unit, n in zip(units, counter.count_many([text[u.start : u.end] for u in units]), strict=True):
        unit.tokens = n
    for section in sections:
        if any(u.tokens > max_tokens for u in section.units):
            section.units = [p for u in section.units for p in _split_oversized(text, u, counter, max_tokens)]
    return Segmentation(sections=[s for s in sections if s.units], truncated_chars=truncated)


def _pack_section(units: Sequence[Unit], max_tokens: int, min_tokens: int, breaks: set[int], first_index: int) -> list[list[Unit]]:
    total = sum(u.tokens for u in units)
    target = total / max(1, math.ceil(total / max_tokens))
    groups: list[list[Unit]] = []
    current: list[Unit] = []
    size = 0
    for offset, unit in enumerate(units):
        if current:
            over_budget = size + unit.tokens > max_tokens
            past_target = size >= target and size + unit.tokens > target * 1.15
            paragraph_end = unit.paragraph_start and size >= 0.75 * target and size + unit.tokens > target
            hinted = (first_index + offset) in breaks and size >= min_tokens
            if over_budget or past_target or paragraph_end or hinted:
                groups.append(current)
                current, size = [], 0
        current.append(unit)
        size += unit.tokens
    if current:
        groups.append(current)
    return groups


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return tuple(out)


def pack_sections(
    segmentation: Segmentation, *, max_tokens: int, min_tokens: int, breaks: Iterable[int] = ()
) -> list[tuple[tuple[str, ...], list[Unit]]]:
    """Group units into chunks: ``[(section_path, units), ...]`` in document order.

    ``breaks`` holds indices into ``segmentation.units`` where a new chunk should start.
    """
    hint = set(breaks)
    groups: list[tuple[tuple[str, ...], list[Unit]]] = []
    index = 0
    for section in segmentation.sections:
        for g in _pack_section(section.units, max_tokens, min_tokens, hint, index):
            groups.append((section.path, g))
        index += len(section.units)
    merged: list[tuple[tuple[str, ...], list[Unit]]] = []
    for path, units in groups:
        size = sum(u.tokens for u in units)
        if merged:
            prev_path, prev_units = merged[-1]
            prev_size = sum(u.tokens for u in prev_units)
            if (size < min_tokens or prev_size < min_tokens) and prev_size + size <= max_tokens:
                merged[-1] = (_common_prefix(prev_path, path), prev_units + units)
                continue
        merged.append((path, units))
    return merged


def build_chunks(
    doc: Document,
    *,
    max_tokens: int,
    min_tokens: int,
    max_chunks: int | None = None,
    breaks: Iterable[int] = (),
    segmentation: Segmentation | None = None,
    counter: TokenCounter | None = None,
) -> ChunkingResult:
    """Chunk a document (segmenting it unless ``segmentation`` is given)."""
    counter = counter or default_token_counter()
    seg = segmentation or segment_document(doc.text, max_tokens=max_tokens, max_chunks=max_chunks, counter=counter)
    groups = pack_sections(seg, max_tokens=max_tokens, min_tokens=min_tokens, breaks=breaks)
    warnings: list[str] = []
    if seg.truncated_chars:
        warnings.append(f"document truncated: the last {seg.truncated_chars} characters were not chunked")
    if max_chunks is not None and len(groups) > max_chunks:
        warnings.append(f"document truncated: kept the first {max_chunks} of {len(groups)} chunks (max_chunks_per_doc)")
        groups = groups[:max_chunks]
    texts = [doc.text[units[0].start : units[-1].end] for _, units in groups]
    counts = counter.count_many(texts)
    chunks = []
    for position, ((path, units), text, n_tokens) in enumerate(zip(groups, texts, counts, strict=True)):
        chunks.append(
            Chunk(
                chunk_id=Chunk.make_id(doc.doc_id, position, text),
                doc_id=doc.doc_id,
                text=text,
                position=position,
                section_path=list(path),
                start_char=units[0].start,
                end_char=units[-1].end,
                n_tokens=n_tokens,
                metadata={"title": doc.title, "source": doc.source, "hard_split": any(u.hard_split for u in units)},
            )
        )
    return ChunkingResult(chunks=chunks, truncated=bool(warnings), warnings=warnings)


def ends_sentence(text: str) -> bool:
    """A chunk ends cleanly when its last character closes a sentence or a clause-level block."""
    stripped = text.rstrip()
    return bool(stripped) and (stripped.endswith(_TERMINAL) or stripped.endswith("```"))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo))


def boundary_report(chunks: Sequence[Chunk], *, max_tokens: int | None = None) -> dict[str, object]:
    """Boundary quality: how many chunks end a sentence, and how long chunks are (tokens).

    * ``sentence_complete_share``: chunks whose last unit is a whole sentence (no hard split);
    * ``terminal_punctuation_share``: chunks whose text ends in closing punctuation (list items,
      headings or code can end a chunk cleanly without it, so this is a lower bound);
    * ``tokens``: min, p10, median, p90, max, mean of ``n_tokens``; ``over_budget``: chunks above it.
    """
    n = len(chunks)
    lengths = [c.n_tokens for c in chunks]
    complete = sum(1 for c in chunks if not c.metadata.get("hard_split"))
    terminal = sum(1 for c in chunks if ends_sentence(c.text))
    return {
        "chunks": n,
        "sentence_complete_share": complete / n if n else 1.0,
        "terminal_punctuation_share": terminal / n if n else 1.0,
        "hard_split_chunks": n - complete,
        "over_budget": sum(1 for x in lengths if max_tokens is not None and x > max_tokens),
        "tokens": {
            "min": min(lengths, default=0),
            "p10": _percentile(lengths, 0.1),
            "median": _percentile(lengths, 0.5),
            "p90": _percentile(lengths, 0.9),
            "max": max(lengths, default=0),
            "mean": statistics.fmean(lengths) if lengths else 0.0,
        },
    }
