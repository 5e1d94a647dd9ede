"""Unit tests: independent-sample significance tables, family-wise correction, fine-tuning set parsing,
distinct-n."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.catalog.ft_quality import distinct_n
from experiments.ft_sets import chat_item, load_ft_set
from experiments.significance import adjust_family, independent_table, paired_table, tables_markdown


def test_independent_samples_identical_are_not_significant_planted_shift_is():
    rng = np.random.default_rng(7)
    base = rng.uniform(0.2, 0.6, 40)
    df = independent_table({"base": base, "same": base.copy(), "better": base + 0.3}, "base", n_boot=500)
    rows = df.set_index("system")
    assert not rows.loc["same", "significant"] and rows.loc["same", "p_value"] == pytest.approx(1.0)
    assert rows.loc["better", "significant"] and rows.loc["better", "effect_size"] > 0.5
    assert rows.loc["better", "diff"] == pytest.approx(0.3)
    assert rows.loc["better", "diff_ci_low"] > 0.2 and rows.loc["better", "diff_ci_high"] < 0.4
    assert not rows.loc["base", "significant"] and np.isnan(rows.loc["base", "p_value"])


def test_a_set_too_small_to_test_is_never_significant():
    df = independent_table({"base": [0.1, 0.2, 0.3], "one": [0.9]}, "base", n_boot=200)
    row = df.set_index("system").loc["one"]
    assert np.isnan(row["p_value"]) and not row["significant"] and row["mean"] == 0.9


def test_family_correction_spans_every_metric():
    base = list(np.linspace(0, 1, 30))
    frames = [independent_table({"a": base, "b": [x + 0.15 for x in base]}, "a", correction="none", n_boot=200,
                                metric=m) for m in ("m1", "m2", "m3")]
    raw = [float(f.loc[~f["is_baseline"], "p_value"].iloc[0]) for f in frames]
    adjust_family(frames, "holm")
    adjusted = [float(f.loc[~f["is_baseline"], "p_adjusted"].iloc[0]) for f in frames]
    assert adjusted == pytest.approx([min(1.0, 3 * p) for p in raw])  # equal p-values: Holm = 3p
    assert all(f.attrs["family_size"] == 3 for f in frames)
    # the tables say which correction was applied, and over the whole family, not over their own row
    markdown, latex = tables_markdown(frames), tables_markdown(frames, fmt="latex")
    assert markdown.count("p-values Holm-corrected over 3 comparisons;") == 3
    assert latex.count("Holm-corrected over 3 comparisons;") == 3
    assert "over 1 comparison" not in markdown
    uncorrected = independent_table({"a": base, "b": base}, "a", correction="none", n_boot=200, metric="m")
    assert "p-values not corrected (1 comparison);" in tables_markdown([uncorrected])


def test_paired_table_for_identical_systems():
    scores = {"a": {"q1": 0.1, "q2": 0.5, "q3": 0.7}, "b": {"q1": 0.1, "q2": 0.5, "q3": 0.7}}
    df = paired_table(scores, "a", n_boot=200, metric="ndcg@10")
    row = df.set_index("system").loc["b"]
    assert row["metric"] == "ndcg@10" and row["p_value"] == 1.0 and not row["significant"]


def test_chat_records_are_checked_and_split_into_context_question_answer(tmp_path):
    good = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Context:\nThe sky is blue.\n\nQuestion: What colour is the sky?"},
                         {"role": "assistant", "content": "blue"}]}
    item = chat_item("x", good)
    assert item.schema_valid and item.context == "The sky is blue." and item.question == "What colour is the sky?"
    assert item.answer == "blue"
    no_answer = chat_item("y", {"messages": good["messages"][:2]})
    assert not no_answer.schema_valid and any("assistant" in p for p in no_answer.problems)
    free_text = chat_item("z", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    assert not free_text.schema_valid and any("Context" in p for p in free_text.problems)

    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({"text": "no messages"}) + "\n")
    items = load_ft_set(path)
    assert [i.schema_valid for i in items] == [True, False, False]


def test_distinct_n_counts_distinct_ngrams_over_all_ngrams():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran over six tokens
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice, "cat sat", "cat ran"
    assert np.isnan(distinct_n(["one"], 2))
