"""liquid_shared.reporting: comparison tables (markdown, LaTeX) and PNG plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquid_shared import stats
from liquid_shared.reporting import (
    comparison_table,
    latex_escape,
    plot_paired_differences,
    plot_per_query,
)

RNG = np.random.default_rng(3)
BASE = RNG.random(50)
SCORES = {"bm25": BASE, "dense_minilm": np.clip(BASE + 0.15 + RNG.normal(0, 0.05, 50), 0, 1.5),
          "hybrid": BASE + RNG.normal(0, 0.2, 50)}


@pytest.fixture(scope="module")
def df():
    return stats.compare(SCORES, "bm25", test="wilcoxon", correction="bh", n_boot=500, seed=0)


def test_markdown_table(df) -> None:
    text = comparison_table(df, metric="nDCG@10")
    lines = text.splitlines()
    assert lines[0] == ("| System | nDCG@10 mean [95% CI] | Δ vs baseline [95% CI] | p (BH) | effect (r_rb) |")
    assert lines[1] == "|---|---:|---:|---:|---:|"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:5]}
    assert set(rows) == {"bm25 (baseline)", "dense_minilm", "hybrid"}
    assert rows["bm25 (baseline)"].endswith("| — | — | — |")
    dense = df.set_index("system").loc["dense_minilm"]
    assert f"{dense['mean']:.3f} [{dense['ci_low']:.3f}, {dense['ci_high']:.3f}]" in rows["dense_minilm"]
    assert f"{dense['diff']:+.3f}" in rows["dense_minilm"]
    assert "<0.001*" in rows["dense_minilm"]  # a large improvement: significant, marked
    assert f"{dense['effect_size']:.2f}" in rows["dense_minilm"]
    assert "Wilcoxon signed-rank test" in text and "BH-corrected over 2 comparisons" in text


def test_latex_table(df) -> None:
    text = comparison_table(df, fmt="latex", metric="nDCG@10", digits=2)
    assert text.startswith("\\begin{tabular}{lrrrr}\n\\toprule")
    assert "dense\\_minilm & " in text and "dense_minilm" not in text
    assert text.count("\\\\") == 4  # header and three systems
    assert "$<$0.001$^{*}$" in text and "95\\% CI" in text and "$r_{rb}$" in text
    wrapped = comparison_table(df, fmt="latex", caption="SciFact test, 300 queries.")
    assert wrapped.startswith("\\begin{table}") and "\\caption{SciFact test, 300 queries." in wrapped


def test_table_errors(df) -> None:
    with pytest.raises(ValueError, match=r"lacks columns \['p_adjusted'"):
        comparison_table(df.drop(columns=["p_adjusted"]))
    with pytest.raises(ValueError, match="unknown fmt"):
        comparison_table(df, fmt="html")
    assert latex_escape("a_b & 50% #1") == "a\\_b \\& 50\\% \\#1"


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"))


def test_plots_are_pngs_with_content(tmp_path: Path) -> None:
    per_query = plot_per_query(SCORES, tmp_path / "plots" / "per_query.png", metric="nDCG@10")
    pixels = _png(per_query)
    assert pixels.shape[0] > 200 and pixels.std() > 10  # not a blank image

    one = _png(plot_paired_differences({"bm25": BASE, "dense": SCORES["dense_minilm"]}, "bm25", tmp_path / "one.png"))
    two = _png(plot_paired_differences(SCORES, "bm25", tmp_path / "two.png"))
    assert two.shape[0] > one.shape[0]  # one panel per compared system


def test_plot_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="baseline 'x'"):
        plot_paired_differences(SCORES, "x", tmp_path / "d.png")
    with pytest.raises(ValueError, match="system 'short' has 3 scores"):
        plot_paired_differences({"bm25": BASE, "short": [1.0, 2.0, 3.0]}, "bm25", tmp_path / "d.png")
    with pytest.raises(ValueError, match="must end in .png"):
        plot_per_query(SCORES, tmp_path / "plot.jpg")
    with pytest.raises(ValueError, match="besides the baseline"):
        plot_paired_differences({"bm25": BASE}, "bm25", tmp_path / "d.png")
