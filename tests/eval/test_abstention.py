"""Abstention metrics per question, the calibration rule, golden lines without answers, the judge fallback."""

from __future__ import annotations

import pytest

from core.settings import JudgeSettings, LLMSettings, Settings
from eval.abstention import MIN_PER_KIND, Outcome, calibrate, question_scores
from eval.goldensets import parse_golden_set
from eval.stats import aggregate, gate_decision, paired_delta
from eval.unmeasured import judge_label
from query import evidence


def _outcome(answerable: bool, abstained: bool, grounding: float | None = 1.0, unsupported: int = 0) -> Outcome:
    return Outcome(answerable, abstained, 0.5, None if abstained else grounding, unsupported)


def test_run_metrics_are_means_of_question_values() -> None:
    """2 unanswerable declined, 1 unanswerable answered, 1 answerable declined, 2 answerable answered
    (one with an unsupported sentence): precision 2/3, recall 2/3, false answers 1/3, unsupported 1/3."""
    outcomes = [
        _outcome(False, True),
        _outcome(False, True),
        _outcome(False, False, grounding=0.5, unsupported=1),
        _outcome(True, True),
        _outcome(True, False),
        _outcome(True, False),
    ]
    rows = [question_scores(o) for o in outcomes]
    mean = {m: aggregate([r[0][m] for r in rows], 200)["mean"] for m in rows[0][0]}
    assert mean["abstention_precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert mean["abstention_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert mean["false_answer_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert mean["unsupported_answer_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert mean["groundedness"] == pytest.approx(2.5 / 3, abs=1e-4)
    # a question a metric does not count is "not measured" with its reason, never a 0
    scores, reasons = question_scores(_outcome(True, False))
    assert scores["abstention_precision"] is None and reasons["abstention_precision"] == "not_declined"
    assert scores["abstention_recall"] is None and reasons["abstention_recall"] == "answerable"
    scores, reasons = question_scores(_outcome(False, True))
    assert scores["groundedness"] is None and reasons["groundedness"] == "declined"


def test_calibration_declines_most_unanswerable_while_answering_ninety_percent() -> None:
    answerable = [0.55, 0.6, 0.7, 0.72, 0.8, 0.81, 0.85, 0.9, 0.92, 0.95]
    unanswerable = [0.1, 0.2, 0.3, 0.4, 0.58, 0.75]
    calibration = calibrate([(c, True) for c in answerable] + [(c, False) for c in unanswerable])
    # Declining below 0.59 would lose 0.55 (one answerable of ten: 90% still answered) and gain 0.58;
    # going past 0.6 loses a second answerable question: the floor stops there.
    assert calibration.threshold == pytest.approx((0.58 + 0.6) / 2)
    assert calibration.answered_share == 0.9 and calibration.declined_share == pytest.approx(5 / 6, abs=1e-4)
    assert calibration.reason is None and "90%" in calibration.as_json()["rule"]
    assert calibration.as_json()["confidence_model"] == evidence.MODEL_VERSION


def test_calibration_prefers_answering_when_declining_gains_nothing() -> None:
    points = [(0.5 + i / 100, True) for i in range(10)] + [(0.1 + i / 100, False) for i in range(5)]
    calibration = calibrate(points)
    assert calibration.declined_share == 1.0 and calibration.answered_share == 1.0
    assert 0.14 < (calibration.threshold or 0) < 0.5


def test_calibration_needs_both_kinds_of_questions() -> None:
    only_answerable = calibrate([(0.5, True)] * 20)
    assert only_answerable.threshold is None and "unanswerable" in (only_answerable.reason or "")
    too_few = calibrate([(0.5, True)] * 20 + [(0.1, False)] * (MIN_PER_KIND - 1))
    assert too_few.threshold is None and too_few.unanswerable == MIN_PER_KIND - 1


def test_golden_lines_may_be_unanswerable_without_a_reference_answer() -> None:
    parsed = parse_golden_set(b'{"question": "Which flag enables turbo?", "answerable": false}\n{"question": "Q?"}\n')
    assert [i.answerable for i in parsed.items] == [False, True]
    assert parsed.items[0].reference_answer == ""


def test_golden_line_answerable_must_be_a_boolean() -> None:
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="line 1: answerable"):
        parse_golden_set(b'{"question": "Q?", "answerable": "no"}\n')


def test_gate_reads_a_rise_of_a_failure_rate_as_a_regression() -> None:
    base = {i: 0.0 for i in range(20)}
    worse = {i: 1.0 if i < 6 else 0.0 for i in range(20)}
    rose = paired_delta("unsupported_answer_rate", base, worse, samples=500)
    passed, reasons = gate_decision([rose], {"unsupported_answer_rate": 0.1})
    assert not passed and "unsupported_answer_rate rose 0.300" in reasons[0]
    fell = paired_delta("unsupported_answer_rate", worse, base, samples=500)
    assert gate_decision([fell], {"unsupported_answer_rate": 0.1})[0]
    recall_drop = paired_delta("abstention_recall", {i: 1.0 for i in range(10)}, base, samples=500)
    assert not gate_decision([recall_drop], {"abstention_recall": 0.2})[0]


def test_answering_llm_judges_when_no_judge_is_configured() -> None:
    llm = LLMSettings(base_url="http://llm.internal:8080/v1", model="qwen", api_key="k", timeout_s=90)
    judge = Settings(llm=llm).resolved_judge
    assert (judge.base_url, judge.model, judge.api_key, judge.timeout_s) == (llm.base_url, "qwen", "k", 90)
    own = JudgeSettings(base_url="http://judge:1/v1", model="big")
    assert Settings(llm=llm, judge=own).resolved_judge.model == "big", "RAGKEEP_JUDGE__* overrides"
    assert not Settings(llm=llm, judge=JudgeSettings(use_llm=False)).resolved_judge.configured
    assert not Settings().resolved_judge.configured
    assert judge_label("qwen", "llm.internal:8080") == "qwen at llm.internal:8080" and judge_label(None, None) == "none"
