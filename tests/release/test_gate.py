"""The promotion gate on real evaluation rows: publish when nothing regressed, record why when it did."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import Collection, EvalRun, EvalTrigger, JobStatus, Version, VersionState
from release import gate
from tests.release.conftest import GATE_TOOLS as TOOLS
from tests.release.conftest import gated_collection, recorded_run

QUESTIONS = 30


def _setup(session: Session) -> tuple[Collection, Version, Version]:
    return gated_collection(session, "gated-kb", {"context_recall": 0.05})


def _run(session: Session, collection: Collection, version: Version, recall: float, trigger: EvalTrigger) -> EvalRun:
    return recorded_run(session, collection, version, [{"context_recall": recall}] * QUESTIONS, trigger)


def test_a_candidate_that_regresses_stays_ready_with_the_reasons(session: Session) -> None:
    collection, live, candidate = _setup(session)
    base = _run(session, collection, live, 0.9, EvalTrigger.manual)
    run = _run(session, collection, candidate, 0.6, EvalTrigger.gate)

    decision = gate.decide(session, run, TOOLS)

    assert decision is not None and decision.outcome == gate.GateOutcome.regressed and not decision.passed
    assert candidate.state == VersionState.ready and collection.live_version_id == live.id
    assert candidate.gate["against"] == 1 and candidate.gate["base_evaluation_id"] == base.id
    assert any("context_recall dropped" in reason for reason in candidate.gate["reasons"])


def test_a_candidate_that_holds_up_goes_live_with_its_decision(session: Session) -> None:
    collection, live, candidate = _setup(session)
    _run(session, collection, live, 0.8, EvalTrigger.manual)
    run = _run(session, collection, candidate, 0.82, EvalTrigger.gate)

    decision = gate.decide(session, run, TOOLS)

    assert decision is not None and decision.outcome == gate.GateOutcome.passed
    session.refresh(collection)
    assert collection.live_version_id == candidate.id and candidate.state == VersionState.live
    assert candidate.gate["passed"] is True and candidate.gate["outcome"] == "passed"


def test_a_failed_evaluation_fails_the_gate(session: Session) -> None:
    collection, _, candidate = _setup(session)
    run = _run(session, collection, candidate, 0.9, EvalTrigger.gate)
    run.status, run.error = JobStatus.failed, "the judge timed out"
    session.commit()
    decision = gate.decide(session, run, TOOLS)
    assert decision is not None and decision.outcome == gate.GateOutcome.evaluation_failed
    assert candidate.gate["reasons"] == ["the evaluation failed: the judge timed out"]
    assert candidate.state == VersionState.ready
