"""Non-LLM fallbacks: what a stage records when its model call fails or the stage is switched off.

They are extractive and deterministic (word frequencies, capitalised phrases, lead sentences),
so a chunk always gets metadata, a summary and facts; records made here carry
``source="fallback"``. QA generation has no fallback: a failed QA call is recorded as a per-chunk
error and the chunk simply contributes no QA pair.
"""

from __future__ import annotations

import re
from collections import Counter

from etl_pipeline.sentences import sentence_spans
from etl_pipeline.stage_outputs import FactsOut, MetadataOut, SummaryOut, TaxonNode, TaxonomyOut
from liquid_shared.schemas import Chunk

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_PROPER = re.compile(r"\b(?:[A-Z][a-z]+(?:\s+(?:of|the|de|von|van)\s+|\s+)?){1,3}")


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def content_words(text: str) -> list[str]:
    """Lower-cased words of three or more letters that are not English stop words."""
    stop = _stop_words()
    return [w for w in (m.group(0).lower().strip("'-") for m in _WORD.finditer(text)) if w not in stop and len(w) > 2]


def top_keywords(text: str, k: int = 4) -> list[str]:
    counts = Counter(content_words(text))
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def proper_names(text: str, k: int = 3) -> list[str]:
    """Capitalised phrases that do not start a sentence (a rough entity finder)."""
    found: list[str] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        for match in _PROPER.finditer(sentence):
            name = match.group(0).strip()
            if match.start() == 0 or len(name) < 3 or name.lower() in _stop_words():
                continue
            if name not in found:
                found.append(name[:30])
    return found[:k]


def lead_sentences(text: str, max_chars: int) -> str:
    out = ""
    for start, end in sentence_spans(text):
        sentence = " ".join(text[start:end].split())
        if out and len(out) + 1 + len(sentence) > max_chars:
            break
        out = f"{out} {sentence}".strip()
    return out[:max_chars] if out else " ".join(text.split())[:max_chars]


def metadata_fallback(chunk: Chunk) -> MetadataOut:
    keywords = [k for k in top_keywords(chunk.text, 4) if len(k) >= 2]
    return MetadataOut(tags=keywords[:3], keywords=keywords, entities=proper_names(chunk.text), importance="medium")


def taxonomy_fallback(chunk: Chunk) -> TaxonomyOut:
    names = [chunk.metadata.get("title") or "", *chunk.section_path]
    levels = [n[:30] for n in dict.fromkeys(n.strip() for n in names) if len(n.strip()) >= 2][:3]
    if not levels:
        levels = top_keywords(chunk.text, 1) or ["general"]
    return TaxonomyOut(path=[TaxonNode(name=n, importance="medium") for n in levels])


def facts_fallback(chunk: Chunk) -> FactsOut:
    """The chunk's first sentences, as many as fit the output's length."""
    facts = ""
    for start, end in sentence_spans(chunk.text):
        sentence = " ".join(chunk.text[start:end].split())
        if len(facts) + len(sentence) + 1 > 300:
            break
        facts = f"{facts} {sentence}".strip()
    if len(facts) < 8:
        facts = (" ".join(chunk.text.split())[:290] or "No text.").ljust(8, ".")
    return FactsOut(facts=facts)


def summary_fallback(chunk: Chunk) -> SummaryOut:
    return SummaryOut(summary=lead_sentences(chunk.text, 220).ljust(10, "."))
