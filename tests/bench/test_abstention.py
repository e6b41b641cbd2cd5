"""bench/abstention.py: the small-collection groups, and rows recorded before a signal existed."""

from __future__ import annotations

import math

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
SIGNALS = {
    "top_score": 0.6,
    "gap": 0.1,
    "coverage": 0.8,
    "agreement": 0.4,
    "held": 0.6,
    "phrase": 0.5,
    "named": 0.3,
    "period": 1.0,
    "known": 1.0,
}


def test_a_row_without_a_signal_the_model_weighs_is_refused_by_name() -> None:
    old = ROW | {k: SIGNALS[k] for k in ("top_score", "gap", "coverage", "agreement")}
    with pytest.raises(abstention.MissingSignal, match="held, phrase, named, period, known, small"):
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
    served = {script: dict(model) for script, model in evidence.MODELS.items()}
    result = abstention.cross_fit(rows, {"latin": {"x"}}, ["top_score"])
    assert served == evidence.MODELS
    assert [d["fitted_on"] for d in result["x"]] == ["train", "test"]
    assert all(d["auc"] == 1.0 and d["answered"] >= 0.92 and d["declined"] == 1.0 for d in result["x"])


def _overlapping(script: str, answerable_coverage: float, count: int) -> list[dict[str, object]]:
    """TRAIN rows of ``script`` whose coverage tells answerable from unanswerable in part, top_score not."""
    return [
        ROW
        | SIGNALS
        | {"id": f"{script}{i}", "split": "train", "script": script, "answerable": i % 2 == 0, "chunks": 500}
        | {"coverage": (answerable_coverage if i % 2 == 0 else 0.0) + (i % 10) / 10, "top_score": 0.3 + i % 5 / 10}
        for i in range(count)
    ]


def test_each_script_gets_its_own_model_and_threshold_on_one_scale() -> None:
    rows = _overlapping("latin", 0.2, 60) + _overlapping("cjk", 0.5, 60)
    models, thresholds = abstention.fit_models(rows, {"latin": {"x"}, "cjk": {"x"}}, ["top_score", "coverage"])
    assert set(models["latin"]) == {"intercept", "top_score", "coverage"}
    assert set(models["cjk"]) == {"intercept", "coverage"}, "the English embedding's cosine is left out"
    assert thresholds["latin"] != thresholds["cjk"], "the Japanese rows' answerable ones read higher"
    # the cjk model's own threshold falls on the default: a row there scores it on the shared scale
    unmoved = abstention.fit([r for r in rows if r["script"] == "cjk"], ["coverage"])
    at = (math.log(thresholds["cjk"] / (1 - thresholds["cjk"])) - unmoved["intercept"]) / unmoved["coverage"]
    assert evidence.score(models["cjk"], {"coverage": at}) == pytest.approx(thresholds["latin"], abs=0.01)
    # without a model of its own, a script is fitted on and scored by the Latin model
    one, _ = abstention.fit_models(rows, {"latin": {"x"}}, ["top_score", "coverage"])
    assert set(one) == {"latin"} and one["latin"] != models["latin"]


def test_rows_recorded_before_the_script_was_take_it_from_their_corpus() -> None:
    assert abstention.script_of(ROW | {"corpus": "jsquad"}) == "cjk"
    assert abstention.script_of(ROW | {"corpus": "small", "group": "jsquad-03"}) == "cjk"
    assert abstention.script_of(ROW | {"corpus": "small", "group": "solana-01"}) == "latin"
    assert abstention.script_of(ROW | {"corpus": "jsquad", "script": "latin"}) == "latin"


def test_calibrated_declines_each_version_below_the_threshold_its_train_questions_support(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bench's ``auto`` after an evaluation: a version's TRAIN questions are its golden set."""
    monkeypatch.setattr(evidence, "MODELS", {"latin": {"intercept": -5.0, "top_score": 10.0}})  # 0.5 at 0.5
    monkeypatch.setattr(evidence, "DEFAULT_ABSTAIN_THRESHOLD", 0.5)

    def rows(half: str, split: str, answerable: float, unanswerable: float, each: int) -> list[dict[str, object]]:
        return [
            ROW
            | {"id": f"{half}{split}{i}", "half": half, "split": split, "answerable": i % 2 == 0}
            | {"top_score": (answerable if i % 2 == 0 else unanswerable) + i / 1000}
            for i in range(2 * each)
        ]

    # half a: its unanswerable questions read close (0.6, above the default's 0.5): calibration declines them;
    # half b: four golden lines, too few for a threshold: the default stays, and answers what reads at 0.6.
    train = rows("a", "train", 0.8, 0.6, 6) + rows("b", "train", 0.8, 0.6, 2)
    test = rows("a", "test", 0.8, 0.6, 5) + rows("b", "test", 0.8, 0.6, 5)
    result = abstention.calibrated(test, train)
    assert result["versions"] == 2 and result["calibrated_versions"] == 1
    assert result["declined_unanswerable"] == 0.5 and result["answered_answerable"] == 1.0
    assert not result["met"]
    report = abstention.analyse(train + test)["x"]["test"]
    assert report["calibrated"] == result and report["default"]["declined_unanswerable"] == 0.0


def test_held_elsewhere_finds_a_present_filing_that_repeats_the_reference_evidence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Label noise: an "unanswerable" question whose evidence a sibling filing repeats word for word."""
    from bench.retrieval_lab import Question
    from ingest import pdfium

    evidence_text = "Net sales rose 7 percent to 12,345 million dollars in the fiscal year"
    texts = {
        "ACME_2022_10K.pdf": f"Annual report. {evidence_text}.",
        "ACME_2023_10K.pdf": f"Annual report. {evidence_text} and more.",  # the sibling repeats it
        "OTHER_2023_10K.pdf": "Net sales fell in a different business altogether this year",
    }
    monkeypatch.setattr(abstention.datasets, "financebench_files", lambda: [(n, n.encode()) for n in texts])
    monkeypatch.setattr(pdfium, "page_texts", lambda data: [texts[data.decode()]])
    repeated = Question("fb-1", "ACME's net sales in FY2022?", frozenset(["ACME_2022_10K.pdf"]), (evidence_text,))
    unique = Question("fb-2", "Why did sales fall?", frozenset(["OTHER_2023_10K.pdf"]), (texts["OTHER_2023_10K.pdf"],))
    monkeypatch.setattr(abstention, "financebench_splits", lambda: {"tune": [repeated], "report": [unique]})
    assert abstention.halves(list(texts)) == {
        "ACME_2022_10K.pdf": "a",
        "ACME_2023_10K.pdf": "b",
        "OTHER_2023_10K.pdf": "a",
    }
    asked = ROW | {"corpus": "financebench", "answerable": False, "half": "b"}  # half b: ACME_2023_10K only
    found = abstention.held_elsewhere([asked | {"id": "fb-1"}, asked | {"id": "fb-2"}, asked | {"answerable": True}])
    assert [(r["id"], r["held_by"], r["held_share"]) for r in found] == [
        ("fb-1", "ACME_2023_10K.pdf", 1.0),
        ("fb-2", "ACME_2023_10K.pdf", 0.0),
    ]
