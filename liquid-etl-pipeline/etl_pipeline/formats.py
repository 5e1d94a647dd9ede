"""Per-format text extraction into one light-Markdown form the chunker understands.

Every loader hands the chunker text where headings are ``#`` lines and paragraphs are separated
by blank lines: HTML through BeautifulSoup, reStructuredText by turning its underlined titles
into ``#`` headings, PDF through pypdf with its hard line breaks joined back into paragraphs.
"""

from __future__ import annotations

import io
import re

from bs4 import BeautifulSoup, NavigableString

_BLOCK_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "dt", "dd", "figcaption", "td", "th")
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "nav", "footer", "header", "form")
_WS = re.compile(r"[ \t\u00a0]+")


def _squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def html_to_markdown(raw: bytes | str) -> tuple[str, str]:
    """Return ``(markdown_text, title)`` of an HTML page (BeautifulSoup detects the encoding)."""
    soup = BeautifulSoup(raw, "html.parser")
    title = _squash(soup.title.get_text()) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    root = soup.body or soup
    blocks: list[str] = []
    for el in root.find_all(_BLOCK_TAGS):
        if el.find_parent(_BLOCK_TAGS) is not None:
            continue  # nested (a <p> inside an <li>): its text is part of the outer block
        if el.name == "pre":
            text = el.get_text().strip("\n")
        else:
            text = _squash(el.get_text(" "))
        if not text:
            continue
        if el.name[0] == "h" and el.name[1:].isdigit():
            blocks.append("#" * int(el.name[1:]) + " " + text)
            title = title or text
        elif el.name == "li":
            blocks.append("- " + text)
        else:
            blocks.append(text)
    if not blocks:  # no block markup at all: fall back to the visible text
        loose = [_squash(s) for s in root.find_all(string=True) if isinstance(s, NavigableString)]
        blocks = [s for s in loose if s]
    return "\n\n".join(blocks), title


_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")


def rst_to_markdown(text: str) -> str:
    """Turn reStructuredText section titles (under- or over-and-underlined) into ``#`` headings.

    Heading levels follow the order in which adornment styles first appear, as in docutils.
    Directive and comment lines (``.. name::``) are dropped; their indented bodies are kept.
    """
    lines = text.split("\n")
    styles: list[tuple[str, bool]] = []
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _ADORNMENT.match(line)
        if over and i + 2 < len(lines) and lines[i + 1].strip() and _ADORNMENT.match(lines[i + 2]):
            style = (over.group(1), True)
            title_line, i = lines[i + 1].strip(), i + 3
        elif line.strip() and not _ADORNMENT.match(line) and _ADORNMENT.match(nxt) and len(nxt.strip()) >= len(line.strip()):
            style = (nxt.strip()[0], False)
            title_line, i = line.strip(), i + 2
        else:
            if not line.lstrip().startswith(".. "):
                out.append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        out.extend(["", "#" * min(6, styles.index(style) + 1) + " " + title_line, ""])
    return "\n".join(out)


class PdfError(ValueError):
    """The PDF cannot be read or has no text."""


def _pdf_page_paragraphs(page_text: str) -> list[str]:
    """Join pypdf's hard line breaks back into paragraphs.

    A line ends a paragraph when it is blank, or short and without closing punctuation while the
    next line starts with a capital (a title or a heading line); a hyphen at a line end joins
    the word.
    """
    lines = [ln.strip() for ln in page_text.split("\n")]
    paragraphs: list[str] = []
    current = ""
    for idx, line in enumerate(lines):
        if not line:
            if current:
                paragraphs.append(current)
                current = ""
            continue
        if current.endswith("-") and line[:1].islower():
            current = current[:-1] + line
        else:
            current = f"{current} {line}" if current else line
        nxt = lines[idx + 1] if idx + 1 < len(lines) else ""
        heading_like = len(line) < 60 and not re.search(r"[.!?:;,]$", line) and nxt[:1].isupper()
        if heading_like:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return paragraphs


def pdf_to_text(raw: bytes) -> tuple[str, str, list[str]]:
    """Return ``(text, title, warnings)`` of a PDF; raise ``PdfError`` when nothing is readable."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfError("the PDF is encrypted with a password")
        pages = list(reader.pages)
    except PdfError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise PdfError(f"cannot parse the PDF (truncated or corrupt?): {type(exc).__name__}: {exc}") from None
    warnings: list[str] = []
    paragraphs: list[str] = []
    for number, page in enumerate(pages, 1):
        try:
            page_text = page.extract_text() or ""
        except Exception as exc:  # pypdf raises many types on a damaged page
            warnings.append(f"page {number}: text extraction failed ({type(exc).__name__}: {exc})")
            continue
        paragraphs.extend(_pdf_page_paragraphs(page_text))
    if not paragraphs:
        raise PdfError(f"the PDF has {len(pages)} page(s) but no extractable text (scanned images?)")
    title = ""
    try:
        meta = reader.metadata
        title = (meta.title or "").strip() if meta else ""
    except Exception:  # damaged info dictionary: the title is optional
        title = ""
    return "\n\n".join(paragraphs), title or paragraphs[0][:80], warnings


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def markdown_title(text: str) -> str:
    """The first heading of a Markdown text, or ''."""
    for line in text.split("\n", 200)[:200]:
        match = _MD_HEADING.match(line)
        if match:
            return match.group(2).strip()
    return ""
