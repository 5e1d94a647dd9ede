"""``python -m rag_runtime``: build-index, search, ask, serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liquid_shared.data import write_beir
from rag_runtime.cli import app
from rag_runtime.index import data_folder

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory, corpus):
    folder = tmp_path_factory.mktemp("cli") / "tinybeir"
    write_beir(folder, {d.id: {"title": "", "text": d.text} for d in corpus}, {"q1": "rates"}, {"q1": {"finance-4": 1}})
    return folder


@pytest.fixture(scope="module")
def built(beir_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-index") / "index"
    result = runner.invoke(app, ["build-index", str(beir_folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "indexed 36 documents" in result.output
    return out


def test_build_index_writes_an_index(built):
    assert (built / "manifest.json").is_file() and (data_folder(built) / "dense" / "index.faiss").is_file()


def test_search_prints_the_top_hits(built):
    result = runner.invoke(app, ["search", "interest rates mortgage", "--index", str(built), "--k", "2", "--mode", "bm25",
                                 "--json"])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(hits) == 2 and hits[0]["id"] == "finance-4"


def test_search_table_and_modes(built):
    result = runner.invoke(app, ["search", "goalkeeper penalty", "--index", str(built), "--mode", "bm25"])
    assert result.exit_code == 0 and "sports-" in result.output


def test_errors_are_one_line_and_exit_2(tmp_path, built):
    result = runner.invoke(app, ["search", "x", "--index", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such index folder" in result.output
    result = runner.invoke(app, ["build-index", str(tmp_path), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "neither an ETL run folder" in result.output
    result = runner.invoke(app, ["search", "x", "--index", str(built), "--mode", "sparse"])
    assert result.exit_code == 2 and "unknown search mode 'sparse'" in result.output


def test_ask_refuses_off_topic_questions_before_loading_a_model(built):
    result = runner.invoke(app, ["ask", "What is the capital of Mongolia?", "--index", str(built)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["refused"] is True


def test_ask_top_sentence_needs_no_model_and_takes_filters(built):
    result = runner.invoke(app, ["ask", "What about interest rates?", "--index", str(built), "--answer-style",
                                 "extractive", "--selection", "top", "--min-similarity", "0.0", "--mode", "hybrid"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert out["refused"] is False and out["style"] == "extractive" and out["citations"]
    assert out["support"]["question_share"] is not None
    bad = runner.invoke(app, ["ask", "rates?", "--index", str(built), "--filter", "colour=red"])
    assert bad.exit_code == 2 and "unknown field 'colour'" in bad.output
    bad = runner.invoke(app, ["ask", "rates?", "--index", str(built), "--filter", "tags"])
    assert bad.exit_code == 2 and "FIELD=VALUE" in bad.output
    nothing = runner.invoke(app, ["ask", "What about interest rates?", "--index", str(built), "--selection", "top",
                                  "--answer-style", "extractive", "--filter", "source=no-such-file.txt"])
    assert nothing.exit_code == 0, nothing.output
    assert json.loads(nothing.output[nothing.output.index("{"):])["refused"] is True


def test_python_dash_m_lists_the_subcommands():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "liquid-shared-core"), str(REPO / "liquid-rag-runtime"),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "rag_runtime", "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("build-index", "search", "ask", "serve"):
        assert command in out.stdout
