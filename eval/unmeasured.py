"""Why a metric was not measured: reason codes, their wording, and what a run's reader must be told.

A score that is ``None`` always comes with one reason code per question and metric. The
codes are stored on each result row, counted per metric on the run
(``metrics[m]["not_measured_reasons"]``), returned by the API and written next to the
metric in reports ("faithfulness: not measured — judge output truncated on 5 of 5").
Imports nothing heavy, so the report and the API can use it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

# Reasons that say nothing about the judge's health: the question gave it nothing to judge.
NO_JUDGE = "no_judge"
NO_CONTEXTS = "no_contexts"
NO_REFERENCE = "no_reference"
NO_REFERENCE_ANSWER = "no_reference_answer"
NO_ANSWER = "no_answer"
# Questions an abstention metric does not count (eval.abstention): not a failure of anything.
NOT_DECLINED = "not_declined"
ANSWERABLE = "answerable"
DECLINED = "declined"
# Reasons for a judge (or RAGAS) that was asked and failed.
JUDGE_TIMEOUT = "judge_timeout"
JUDGE_TRUNCATED = "judge_truncated"
JUDGE_UNPARSABLE = "judge_unparsable"
JUDGE_ERROR = "judge_error"  # stored as "judge_error:<exception class>"
NAN = "nan"

REASONS: dict[str, str] = {
    NO_JUDGE: "no judge configured",
    NO_CONTEXTS: "nothing retrieved",
    NO_REFERENCE: "no reference contexts or documents",
    NO_REFERENCE_ANSWER: "no reference answer",
    NO_ANSWER: "no answer",
    NOT_DECLINED: "answered (counts declined questions only)",
    ANSWERABLE: "answerable (counts unanswerable questions only)",
    DECLINED: "declined (no answer to check)",
    JUDGE_TIMEOUT: "judge timed out",
    JUDGE_TRUNCATED: "judge output truncated",
    JUDGE_UNPARSABLE: "judge output did not parse",
    JUDGE_ERROR: "judge error",
    NAN: "RAGAS returned NaN",
}
_NOTHING_TO_JUDGE = frozenset(
    {NO_JUDGE, NO_CONTEXTS, NO_REFERENCE, NO_REFERENCE_ANSWER, NO_ANSWER, NOT_DECLINED, ANSWERABLE, DECLINED}
)


def is_failure(reason: str) -> bool:
    """True when the metric was attempted and failed (the judge or RAGAS), not skipped for lack of input."""
    return reason not in _NOTHING_TO_JUDGE


def label(reason: str) -> str:
    """Readable wording of a reason code; ``judge_error:APIConnectionError`` -> ``judge error (APIConnectionError)``."""
    code, _, detail = reason.partition(":")
    text = REASONS.get(code, code.replace("_", " "))
    return f"{text} ({detail})" if detail else text


def describe(reasons: Mapping[str, int], total: int) -> str:
    """``judge output truncated on 5 of 5, judge timed out on 1 of 5``, most frequent first; empty if none."""
    ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{label(reason)} on {count} of {total}" for reason, count in ordered)


def count(reasons: Sequence[Mapping[str, str]], metric: str) -> dict[str, int]:
    """How many questions were not measured for ``metric``, by reason."""
    return dict(Counter(row[metric] for row in reasons if metric in row))


def judge_warnings(
    judge_model: str | None, reasons: Sequence[Mapping[str, str]], judge_metrics: Sequence[str]
) -> list[str]:
    """What a run must say before its scores are read, about the judge.

    A question was judged when at least one judge metric was asked of the judge; it failed
    when every judge metric asked of it failed. If every judged question failed, the run
    says so: its scores then hold no judge metric at all, which must not read like a success.
    """
    judged = failed = 0
    for row in reasons:
        asked = [m for m in judge_metrics if m not in row or is_failure(row[m])]
        if not asked:
            continue
        judged += 1
        failed += all(m in row for m in asked)
    if not judged or not failed:
        return []
    judge = f"the judge {judge_model}" if judge_model else "the judge"
    details = "; ".join(
        f"{metric}: {describe(counts, len(reasons))}"
        for metric in judge_metrics
        if (counts := {r: n for r, n in count(reasons, metric).items() if is_failure(r)})
    )
    if failed == judged:
        return [
            f"{judge} failed on every judged question ({failed} of {judged}), no judge metric was measured: {details}"
        ]
    return [f"{judge} failed on {failed} of {judged} judged questions: {details}"]


def judge_label(model: str | None, host: str | None) -> str:
    """Which judge scored a run, as the API and reports say it: ``model at host``, or ``none``."""
    if not model:
        return "none"
    return f"{model} at {host}" if host else model
