"""Reasons for unmeasured scores: their wording, their counts, and the warning a failing judge earns a run."""

from __future__ import annotations

from eval.ragas_adapter import LLM_METRICS
from eval.unmeasured import count, describe, is_failure, judge_warnings, label

ALL_TRUNCATED = dict.fromkeys(LLM_METRICS, "judge_truncated")


def test_reasons_read_as_sentences_with_counts_most_frequent_first() -> None:
    assert describe({"judge_truncated": 5}, 5) == "judge output truncated on 5 of 5"
    assert (
        describe({"judge_timeout": 1, "judge_unparsable": 3, "judge_error:APIConnectionError": 1}, 5)
        == "judge output did not parse on 3 of 5, judge error (APIConnectionError) on 1 of 5, judge timed out on 1 of 5"
    )
    assert describe({}, 5) == ""
    assert label("no_judge") == "no judge configured" and label("nan") == "RAGAS returned NaN"


def test_only_attempts_that_failed_count_as_failures() -> None:
    assert all(is_failure(r) for r in ("judge_timeout", "judge_truncated", "judge_unparsable", "nan", "judge_error:X"))
    assert not any(
        is_failure(r) for r in ("no_judge", "no_contexts", "no_reference", "no_reference_answer", "no_answer")
    )


def test_counts_by_reason_per_metric() -> None:
    rows = [ALL_TRUNCATED, {"faithfulness": "judge_unparsable"}, {}]
    assert count(rows, "faithfulness") == {"judge_truncated": 1, "judge_unparsable": 1}
    assert count(rows, "answer_relevancy") == {"judge_truncated": 1}


def test_a_judge_that_failed_on_every_judged_question_makes_the_run_say_so() -> None:
    rows = [ALL_TRUNCATED] * 5
    [warning] = judge_warnings("smollm2", rows, LLM_METRICS)
    assert warning.startswith(
        "the judge smollm2 failed on every judged question (5 of 5), no judge metric was measured"
    )
    assert "faithfulness: judge output truncated on 5 of 5" in warning


def test_questions_with_nothing_to_judge_do_not_count_against_the_judge() -> None:
    nothing = dict.fromkeys(LLM_METRICS, "no_contexts")
    [warning] = judge_warnings("j", [ALL_TRUNCATED, nothing], LLM_METRICS)
    assert "every judged question (1 of 1)" in warning


def test_partial_failures_are_named_and_a_judged_run_without_failures_has_no_warning() -> None:
    one_measured = {**ALL_TRUNCATED}
    del one_measured["faithfulness"]  # faithfulness was measured on this question
    [warning] = judge_warnings("j", [one_measured, ALL_TRUNCATED], LLM_METRICS)
    assert warning.startswith("the judge j failed on 1 of 2 judged questions")
    assert judge_warnings("j", [{}, {}], LLM_METRICS) == []
    assert judge_warnings(None, [dict.fromkeys(LLM_METRICS, "no_judge")], LLM_METRICS) == [], "no judge, no warning"
