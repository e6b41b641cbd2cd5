"""The promotion gate on real evaluation rows: publish when nothing regressed, record why when it did."""

from __future__ import annotations

from contextlib import nullcontext

from sqlalchemy.orm import Session

from core import catalog
from core.config import CollectionConfig
from core.models import Collection, EvalResult, EvalRun, EvalTrigger, JobKind, JobStatus, Version, VersionState
from release import gate
from release.evaluations import EvalTools

QUESTIONS = 30


# Runs that are all recorded already: deciding never evaluates, so no engine or scorer is needed.
TOOLS = EvalTools(engine=None, scorer=None, bootstrap_samples=200, running=lambda job_id: nullcontext())  # type: ignore[arg-type]


def _setup(session: Session) -> tuple[Collection, Version, Version]:
    config = CollectionConfig.model_validate(
        {"publish_policy": "gated", "evaluation": {"gate": {"context_recall": 0.05}}}
    )
    collection = catalog.create_collection(session, "gated-kb", "", [], config)
    versions = []
    for _ in range(2):
        job = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, job.id, lambda name, n: f"rk_{name}_v{n}")
        version.state = VersionState.ready
        versions.append(version)
    session.flush()
    catalog.publish(session, collection, versions[0])
    session.commit()
    return collection, versions[0], versions[1]


def _run(session: Session, collection: Collection, version: Version, recall: float, trigger: EvalTrigger) -> EvalRun:
    golden = catalog.list_golden_sets(session, collection)
    golden_set = (
        golden[0]
        if golden
        else catalog.create_golden_set(
            session, collection, "g.jsonl", "jsonl", [{"question": f"q{i}?"} for i in range(QUESTIONS)]
        )
    )
    job = catalog.create_job(session, JobKind.evaluate, collection.id)
    run = catalog.create_eval_run(session, collection, version, golden_set, trigger, job)
    for position in range(QUESTIONS):
        session.add(
            EvalResult(run_id=run.id, position=position, question=f"q{position}?", scores={"context_recall": recall})
        )
    run.status = JobStatus.succeeded
    session.commit()
    return run


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
