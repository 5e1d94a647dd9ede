"""Loaders: every format, encoding detection, content hashes and clear errors for bad files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from etl_helpers import write_text_pdf

from etl_pipeline.loaders import LoadError, discover_sources, load_document

MB = 10**6


def _load(folder: Path, name: str):
    (item,) = [it for it in discover_sources(folder) if it.source == name]
    return load_document(item, max_bytes=64 * MB)


def test_markdown_keeps_headings_and_title(tmp_path: Path):
    (tmp_path / "a.md").write_text("# Title Here\n\nSome text.\n\n## Part\n\nMore text.\n", encoding="utf-8")
    doc = _load(tmp_path, "a.md")
    assert doc.title == "Title Here"
    assert "## Part" in doc.text
    assert doc.mime == "text/markdown"
    assert len(doc.content_hash) == 64


def test_html_becomes_markdown_without_scripts_or_navigation(tmp_path: Path):
    html = (
        "<html><head><title>Page</title><script>var x = 'hidden';</script></head><body>"
        "<nav>menu link</nav><h1>Heading</h1><p>First <b>bold</b> paragraph.</p>"
        "<ul><li>one</li><li>two</li></ul><h2>Sub</h2><p>Second.</p></body></html>"
    )
    (tmp_path / "p.html").write_text(html, encoding="utf-8")
    doc = _load(tmp_path, "p.html")
    assert doc.title == "Page"
    assert doc.text.splitlines()[0] == "# Heading"
    assert "First bold paragraph." in doc.text
    assert "- one" in doc.text and "## Sub" in doc.text
    assert "hidden" not in doc.text and "menu link" not in doc.text


def test_rst_titles_become_heading_levels_in_order_of_appearance(tmp_path: Path):
    rst = "=====\nTop\n=====\n\nIntro.\n\nSection\n=======\n\nBody.\n\nSub\n---\n\nDeep.\n\n.. note:: dropped directive\n"
    (tmp_path / "g.rst").write_text(rst, encoding="utf-8")
    doc = _load(tmp_path, "g.rst")
    lines = [ln for ln in doc.text.splitlines() if ln.startswith("#")]
    assert lines == ["# Top", "## Section", "### Sub"]
    assert "dropped directive" not in doc.text


def test_pdf_text_is_extracted(tmp_path: Path):
    write_text_pdf(tmp_path / "d.pdf", "Lighthouses", ["A lighthouse marks dangerous coasts with a bright lamp.", "Keepers once trimmed the wicks every night."])
    doc = _load(tmp_path, "d.pdf")
    assert doc.mime == "application/pdf"
    assert doc.title == "Lighthouses"
    assert "bright lamp" in doc.text and "trimmed the wicks" in doc.text


def test_jsonl_records_are_separate_documents_with_their_own_errors(tmp_path: Path):
    lines = [
        json.dumps({"id": "a", "title": "A", "text": "Alpha text."}),
        "",
        "{not json",
        json.dumps({"id": "c", "body": "no text field"}),
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = discover_sources(tmp_path)
    # named after the record's own id, or (no id) its content hash; never its line number
    bad = hashlib.sha256(b"{not json\n").hexdigest()[:12]
    assert [it.source for it in items] == ["r.jsonl#a", f"r.jsonl#sha-{bad}", "r.jsonl#c"]
    doc = load_document(items[0], max_bytes=MB)
    assert (doc.title, doc.text, doc.metadata["id"]) == ("A", "Alpha text.", "a")
    with pytest.raises(LoadError, match=r"r.jsonl#sha-[0-9a-f]{12}: line 3: not a valid JSON record"):
        load_document(items[1], max_bytes=MB)
    with pytest.raises(LoadError, match=r"no string field 'text'"):
        load_document(items[2], max_bytes=MB)


def test_non_utf8_text_is_detected_and_decoded(tmp_path: Path):
    text = "Le café de la rue est très agréable, et les élèves y étudient à côté du théâtre. " * 5
    (tmp_path / "latin.txt").write_bytes(text.encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        (tmp_path / "latin.txt").read_bytes().decode("utf-8")
    doc = _load(tmp_path, "latin.txt")
    assert "très agréable, et les élèves" in doc.text
    assert doc.metadata["encoding"] != "utf-8"
    assert any("not UTF-8" in w for w in doc.metadata["warnings"])


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("empty.txt", b"", "empty document"),
        ("blank.md", b"   \n\n  \t\n", "empty document"),
        ("image.txt", bytes(range(256)) * 40, "looks binary"),
        ("noise.md", bytes((i * 7919) % 251 + 1 for i in range(4000)), "looks binary|no other encoding fits"),
    ],
)
def test_bad_text_files_fail_with_a_reason_naming_the_file(tmp_path: Path, name: str, payload: bytes, reason: str):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(LoadError) as info:
        _load(tmp_path, name)
    assert str(info.value).startswith(f"{name}: ")
    assert re.search(reason, str(info.value))


def test_truncated_pdf_fails_clearly(tmp_path: Path):
    good = write_text_pdf(tmp_path / "full.pdf", "Title", ["Some words on a page."]).read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 2])
    with pytest.raises(LoadError, match=r"cut.pdf: cannot parse the PDF \(truncated or corrupt\?\)"):
        _load(tmp_path, "cut.pdf")


def test_oversized_file_is_refused_before_reading(tmp_path: Path):
    (tmp_path / "big.txt").write_text("word " * 1000, encoding="utf-8")
    (item,) = discover_sources(tmp_path)
    with pytest.raises(LoadError, match="over the 0 MB limit"):
        load_document(item, max_bytes=100)


def test_discovery_sorts_skips_hidden_and_unsupported_and_limits(tmp_path: Path):
    for name in ("b.txt", "a.md", "c.csv", ".hidden.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.html").write_text("<p>x</p>", encoding="utf-8")
    (tmp_path / "empty_dir").mkdir()
    assert [it.source for it in discover_sources(tmp_path)] == ["a.md", "b.txt", "sub/d.html"]
    assert [it.source for it in discover_sources(tmp_path, limit=2)] == ["a.md", "b.txt"]


def test_doc_id_is_stable_for_same_bytes_and_changes_with_content(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("one", encoding="utf-8")
    first = discover_sources(tmp_path)[0]
    assert discover_sources(tmp_path)[0].doc_id == first.doc_id
    path.write_text("two", encoding="utf-8")
    assert discover_sources(tmp_path)[0].doc_id != first.doc_id


def test_missing_input_folder_is_an_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_sources(tmp_path / "nope")
