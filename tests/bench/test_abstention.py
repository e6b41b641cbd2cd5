"""bench/abstention.py: the small-collection groups, and rows recorded before a signal existed."""

from __future__ import annotations

import pytest

from bench import abstention
from query import evidence


def test_small_groups_are_fixed_halvable_and_ask_their_own_documents() -> None:
    groups = abstention.small_groups()
    assert [g.name for g in groups] == [g.name for g in abstention.small_groups()]  # by sha256, not by chance
    assert {g.name.split("-")[0] for g in groups} == {"jsquad", "solana", "scifact"}
    for group in groups:
        names = {name for name, _ in group.files}
        assert len(names) == len(group.files) >= 2, group.name  # both halves hold a document
        halves = abstention.halves(sorted(names))
        assert set(halves.values()) == {"a", "b"}
        assert group.probes and all(p.documents and p.documents <= names for p in group.probes), group.name
        assert len({p.id for p in group.probes}) == len(group.probes)
    assert {p.split for g in groups for p in g.probes} == {"train", "test"}


ROW = {"corpus": "x", "id": "q1", "split": "test", "answerable": True, "answer_mode": "extractive"}
SIGNALS = {"top_score": 0.6, "gap": 0.1, "coverage": 0.8, "agreement": 0.4, "held": 0.6, "phrase": 0.5, "named": 0.3}


def test_a_row_without_a_signal_the_model_weighs_is_refused_by_name() -> None:
    old = ROW | {k: SIGNALS[k] for k in ("top_score", "gap", "coverage", "agreement")}
    with pytest.raises(abstention.MissingSignal, match="held, phrase, named, small"):
        abstention.rescored([old])


def test_small_is_derived_from_the_recorded_chunk_count() -> None:
    row = ROW | SIGNALS | {"chunks": 3}
    assert abstention.completed(row)["small"] == evidence.size_weight(3) == pytest.approx(1 / 1.3)
    (score,) = abstention.rescored([row])
    assert score == pytest.approx(evidence.confidence(abstention.completed(row)))


def test_cross_fit_scores_a_procedure_both_ways_and_leaves_the_served_model_alone() -> None:
    rows = [
        ROW
        | SIGNALS
        | {"id": f"q{i}", "split": ("train", "test")[i % 2], "answerable": i % 4 < 2, "chunks": 500}
        | {"top_score": (0.7 if i % 4 < 2 else 0.4) + (i % 7) / 100}
        for i in range(80)
    ]
    served = dict(evidence.COEFFICIENTS)
    result = abstention.cross_fit(rows, {"x"}, ["top_score"])
    assert served == evidence.COEFFICIENTS
    assert [d["fitted_on"] for d in result["x"]] == ["train", "test"]
    assert all(d["auc"] == 1.0 and d["answered"] >= 0.92 and d["declined"] == 1.0 for d in result["x"])
