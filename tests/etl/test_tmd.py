"""TMD codes: the fixed table, parsing, and nearest-description assignment with the real embedder."""

from __future__ import annotations

import pytest

from etl_pipeline.tmd import (
    DOMAINS,
    MODIFIERS,
    TASKS,
    TmdAssigner,
    TmdCode,
    tmd_distribution,
    tmd_indices,
)
from liquid_shared.embeddings import get_embedder


@pytest.fixture(scope="module")
def assigner() -> TmdAssigner:
    return TmdAssigner(get_embedder().encode)


def test_label_table_is_fixed_and_unique():
    for table in (DOMAINS, TASKS, MODIFIERS):
        names = [n for n, _ in table]
        assert len(names) == len(set(names))
        assert all(n.isidentifier() and n.islower() for n in names)
    assert (len(DOMAINS), len(TASKS), len(MODIFIERS)) == (10, 8, 6)


def test_codes_parse_and_index():
    code = TmdCode("health", "procedure", "cautionary")
    assert code.code == "health.procedure.cautionary"
    assert TmdCode.parse(code.code) == code
    assert tmd_indices("science.definition.introductory") == (0, 0, 0)
    with pytest.raises(ValueError, match="unknown task 'dance'"):
        TmdCode.parse("science.dance.introductory")
    with pytest.raises(ValueError, match="not 'domain.task.modifier'"):
        TmdCode.parse("science.definition")


@pytest.mark.slow
def test_assignment_follows_the_meaning_of_the_text(assigner: TmdAssigner):
    texts = [
        "The doctor prescribed antibiotics for the infection and told the patient to rest and drink fluids.",
        "In 1066 the Norman army crossed the Channel and defeated the English king at the Battle of Hastings.",
        "First unplug the router. Then wait ten seconds, plug it back in and wait for the lights to turn green.",
        "Warning: never mix bleach with ammonia, because the fumes are toxic and can injure your lungs.",
    ]
    vectors = get_embedder().encode(texts)
    codes = assigner.assign(vectors)
    assert codes[0].domain == "health"
    assert codes[1].domain == "history" and codes[1].modifier == "historical"
    assert codes[2].task == "procedure"
    assert codes[3].modifier == "cautionary"
    assert assigner.assign(vectors) == codes  # deterministic


def test_distribution_counts_every_axis():
    dist = tmd_distribution(["life.explanation.introductory", "life.data.technical", "history.narrative.historical"])
    assert dist["domain"]["life"] == 2 and dist["domain"]["history"] == 1
    assert dist["task"]["explanation"] == 1 and dist["task"]["definition"] == 0
    assert sum(dist["modifier"].values()) == 3
    assert next(iter(dist["code"])) in {"life.explanation.introductory", "life.data.technical", "history.narrative.historical"}
