"""Abstention and groundedness as evaluation metrics, and the confidence threshold a golden set supports.

Every golden question is answered through ``/query``'s engine, which reports its
``confidence`` (query.evidence), whether it declined (``answer_mode == "abstained"``) and how
well its passages support each answer sentence (query.grounding). Each metric is a mean of
per-question values, so it gets a bootstrap interval and paired comparisons like the RAGAS
metrics; a question a metric does not count is "not measured" for it, with its reason:

- ``abstention_precision``: of the declined questions, the share that no document answers
  (``answerable: false`` golden lines);
- ``abstention_recall``: of the unanswerable questions, the share declined;
- ``false_answer_rate``: of the unanswerable questions, the share answered anyway
  (1 - recall; lower is better);
- ``unsupported_answer_rate``: of the answered questions, the share with at least one sentence
  its passages do not support (lower is better);
- ``groundedness``: of the answered questions, the mean share of supported sentences
  (ragkeep's own check, not a RAGAS metric: no LLM involved).

Calibration (``calibrate``) chooses the threshold ``answer.abstain: auto`` uses for the version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from eval import unmeasured
from query import evidence

ABSTENTION_METRICS = (
    "abstention_precision",
    "abstention_recall",
    "false_answer_rate",
    "unsupported_answer_rate",
    "groundedness",
)
# A rise of these is a regression (the gate and the reports read their deltas the other way).
LOWER_IS_BETTER = frozenset({"false_answer_rate", "unsupported_answer_rate"})

# The calibration rule: among cut points between the golden set's confidences, keep those that still
# answer at least ANSWERED_FLOOR of the answerable questions; pick the one declining the most
# unanswerable ones (ties: the one answering the most answerable ones). It needs MIN_PER_KIND
# questions of each kind, else the version has no calibrated threshold (``auto`` uses the default).
ANSWERED_FLOOR = 0.9
MIN_PER_KIND = 5
RULE = (
    f"largest share of unanswerable questions declined while at least {ANSWERED_FLOOR:.0%} of answerable "
    f"ones are answered; needs {MIN_PER_KIND} questions of each kind"
)


@dataclass(frozen=True)
class Outcome:
    """How one golden question was answered, and what the golden set says about it."""

    answerable: bool
    abstained: bool
    confidence: float | None
    grounding_score: float | None
    unsupported_sentences: int | None


def question_scores(outcome: Outcome) -> tuple[dict[str, float | None], dict[str, str]]:
    """The question's value for each abstention metric (None where the metric does not count it) and why."""
    scores: dict[str, float | None] = dict.fromkeys(ABSTENTION_METRICS)
    reasons: dict[str, str] = {}
    if outcome.abstained:
        scores["abstention_precision"] = 0.0 if outcome.answerable else 1.0
    else:
        reasons["abstention_precision"] = unmeasured.NOT_DECLINED
    if outcome.answerable:
        reasons["abstention_recall"] = reasons["false_answer_rate"] = unmeasured.ANSWERABLE
    else:
        scores["abstention_recall"] = 1.0 if outcome.abstained else 0.0
        scores["false_answer_rate"] = 0.0 if outcome.abstained else 1.0
    if outcome.abstained:
        reasons["unsupported_answer_rate"] = reasons["groundedness"] = unmeasured.DECLINED
    elif outcome.grounding_score is None:
        reasons["unsupported_answer_rate"] = reasons["groundedness"] = unmeasured.NO_ANSWER
    else:
        scores["unsupported_answer_rate"] = 1.0 if (outcome.unsupported_sentences or 0) > 0 else 0.0
        scores["groundedness"] = float(outcome.grounding_score)
    return scores, reasons


@dataclass(frozen=True)
class Calibration:
    threshold: float | None
    answerable: int
    unanswerable: int
    answered_share: float | None = None  # of answerable questions, at the threshold (on this golden set)
    declined_share: float | None = None  # of unanswerable questions, at the threshold (on this golden set)
    reason: str | None = None  # why there is no threshold

    def as_json(self) -> dict[str, Any]:
        # The confidence model the threshold was chosen for: a threshold calibrated under an
        # earlier model stays in force (confidences are on one 0-1 scale under both) until the next run.
        return {**self.__dict__, "rule": RULE, "confidence_model": evidence.MODEL_VERSION}


def calibrate(points: Sequence[tuple[float, bool]]) -> Calibration:
    """The confidence threshold a golden set supports, from (confidence, answerable) per question.

    A question is declined when its confidence is below the threshold. Candidates are 0 (decline
    nothing) and the midpoints between consecutive distinct confidences (a margin on both sides).
    The shares returned are measured on the same questions the threshold was chosen on: they say
    what the rule achieved, not what to expect on new questions.
    """
    answerable = sorted(c for c, a in points if a)
    unanswerable = sorted(c for c, a in points if not a)
    if len(answerable) < MIN_PER_KIND or len(unanswerable) < MIN_PER_KIND:
        return Calibration(
            None,
            len(answerable),
            len(unanswerable),
            reason=f"needs at least {MIN_PER_KIND} answerable and {MIN_PER_KIND} unanswerable "
            f"(answerable: false) questions; the golden set has {len(answerable)} and {len(unanswerable)}",
        )
    values = sorted({c for c, _ in points})
    candidates = [0.0] + [(low + high) / 2 for low, high in pairwise(values)]
    best: tuple[int, int, float] | None = None
    for threshold in candidates:
        answered = sum(c >= threshold for c in answerable)
        declined = sum(c < threshold for c in unanswerable)
        if answered < ANSWERED_FLOOR * len(answerable):
            continue
        if best is None or (declined, answered) > best[:2]:
            best = (declined, answered, threshold)
    assert best is not None  # 0.0 answers every answerable question
    declined, answered, threshold = best
    return Calibration(
        threshold,
        len(answerable),
        len(unanswerable),
        round(answered / len(answerable), 4),
        round(declined / len(unanswerable), 4),
    )
