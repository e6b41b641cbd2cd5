"""Abstention and groundedness in evaluations: a run records them and calibrates the version; the gate and
the comparison read them like the other metrics (a rising failure rate is a regression)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core import catalog
from core.models import Collection, EvalRun, EvalTrigger, Version, VersionState
from core.settings import JudgeSettings
from eval import runner
from eval.ragas_adapter import RagasScorer
from query.engine import QueryRequest, QueryResult
from query.grounding import Grounding, SentenceSupport
from release import gate
from tests.release.conftest import GATE_TOOLS as TOOLS
from tests.release.conftest import gated_collection, recorded_run

QUESTIONS = 20


def _setup(session: Session, gate_limits: dict[str, float]) -> tuple[Collection, Version, Version]:
    return gated_collection(session, "abstaining-kb", gate_limits)


def _run(session: Session, collection: Collection, version: Version, unsupported: int, trigger: EvalTrigger) -> EvalRun:
    """A recorded run where the first ``unsupported`` of the answered questions had an unsupported sentence."""
    scores = [
        {"unsupported_answer_rate": 1.0 if position < unsupported else 0.0, "context_recall": 0.8}
        for position in range(QUESTIONS)
    ]
    return recorded_run(session, collection, version, scores, trigger)


def test_a_candidate_whose_unsupported_answer_rate_rises_is_held_back(session: Session) -> None:
    collection, live, candidate = _setup(session, {"unsupported_answer_rate": 0.1})
    _run(session, collection, live, 1, EvalTrigger.manual)
    run = _run(session, collection, candidate, 8, EvalTrigger.gate)

    decision = gate.decide(session, run, TOOLS)

    assert decision is not None and decision.outcome == gate.GateOutcome.regressed
    assert candidate.state == VersionState.ready and collection.live_version_id == live.id
    assert any("unsupported_answer_rate rose 0.350" in reason for reason in candidate.gate["reasons"])
    comparison = runner.compare_runs(session, catalog.latest_eval_run(session, live), run, 200)  # type: ignore[arg-type]
    [delta] = [d for d in comparison.deltas if d.metric == "unsupported_answer_rate"]
    assert delta.delta == 0.35 and comparison.worse and "unsupported_answer_rate" in comparison.worse[0]["drops"]


def test_a_candidate_with_fewer_unsupported_answers_goes_live(session: Session) -> None:
    collection, live, candidate = _setup(session, {"unsupported_answer_rate": 0.1})
    _run(session, collection, live, 6, EvalTrigger.manual)
    run = _run(session, collection, candidate, 1, EvalTrigger.gate)
    decision = gate.decide(session, run, TOOLS)
    assert decision is not None and decision.outcome == gate.GateOutcome.passed


@dataclass
class ConfidenceEngine:
    """Answers golden questions with fixed confidences (the real engine's path is tested end to end in
    tests/integration/test_gaps_and_abstention.py); declines below 0.5 as ``abstain: auto`` would."""

    confidence: dict[str, float]

    def query(self, request: QueryRequest) -> QueryResult:
        value = self.confidence[request.question]
        declined = value < 0.5
        invented = request.question == "a2?"
        grounding = (
            Grounding()
            if declined
            else Grounding(
                (SentenceSupport("An answer.", not invented, 0.9, (1,), ("42",) if invented else ()),),
                0.0 if invented else 1.0,
            )
        )
        mode = "abstained" if declined else "extractive"
        return QueryResult(
            "",
            "c",
            request.version or 1,
            "An answer.",
            mode,
            [],
            {},
            {},
            [],
            None,
            confidence=value,
            grounding=grounding,
        )


def test_a_run_records_abstention_metrics_and_calibrates_its_version(session: Session) -> None:
    collection, _, version = _setup(session, {})
    answerable = {f"a{i}?": 0.6 + i / 40 for i in range(10)}  # 0.600 .. 0.825
    unanswerable = {f"u{i}?": c for i, c in enumerate([0.1, 0.2, 0.3, 0.55, 0.7])}
    lines = [{"question": q} for q in answerable] + [{"question": q, "answerable": False} for q in unanswerable]
    catalog.create_golden_set(session, collection, "g.jsonl", "jsonl", lines)
    run, _ = runner.new_run(session, collection, version, EvalTrigger.manual)
    session.commit()

    scorer = RagasScorer(JudgeSettings(), None)  # type: ignore[arg-type]  # no judge: no embedder needed
    runner.run_evaluation(session, ConfidenceEngine({**answerable, **unanswerable}), scorer, collection, run, 200)  # type: ignore[arg-type]
    session.commit()

    metrics = {m: run.metrics[m]["mean"] for m in ("abstention_precision", "abstention_recall", "false_answer_rate")}
    assert metrics == {"abstention_precision": 1.0, "abstention_recall": 0.6, "false_answer_rate": 0.4}
    assert run.metrics["unsupported_answer_rate"]["mean"] == round(1 / 12, 4)  # a2 of 12 answered
    assert run.metrics["abstention_recall"]["not_measured_reasons"] == {"answerable": 10}
    # 0.55 can be declined at the cost of one answerable question (0.600): 90% still answered; 0.7 cannot
    assert run.calibration["threshold"] == (0.55 + 0.6) / 2 and run.calibration["declined_share"] == 0.8
    session.refresh(version)
    assert version.calibrated_threshold == run.calibration["threshold"]
    rows = {row.question: row for row in catalog.eval_results(session, run.id)}
    assert rows["u0?"].answer_mode == "abstained" and not rows["u0?"].answerable and rows["u0?"].confidence == 0.1
    assert rows["a2?"].unsupported_sentences == 1 and rows["a2?"].grounding_score == 0.0
    assert run.judge_model is None and run.judge_host is None
