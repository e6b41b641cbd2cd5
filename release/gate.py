"""The promotion gate of ``publish_policy: gated``: a candidate goes live only if no gated metric
regresses against the live version on the same golden questions."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy.orm import Session

from core import catalog
from core.errors import GoldenSetMissing
from core.models import Collection, EvalRun, EvalTrigger, JobStatus, Version
from eval import runner
from eval.stats import gate_decision
from release.dispatch import Enqueue, Step, dispatch
from release.evaluations import EvalTools, evaluate_now
from release.publish import publish_if_newest


class GateOutcome(StrEnum):
    passed = "passed"  # no gated metric regressed
    unopposed = "unopposed"  # no live version to compare with: passes
    regressed = "regressed"  # a gated metric dropped more than its threshold
    evaluation_failed = "evaluation_failed"  # the candidate's evaluation failed
    baseline_failed = "baseline_failed"  # the live version's evaluation failed
    no_golden_set = "no_golden_set"  # nothing to evaluate on: publish by hand


@dataclass(frozen=True)
class GateDecision:
    outcome: GateOutcome
    reasons: list[str]
    evaluation_id: str | None = None
    against: int | None = None  # the live version's number
    base_evaluation_id: str | None = None
    deltas: dict[str, float | None] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome in (GateOutcome.passed, GateOutcome.unopposed)

    def as_json(self) -> dict[str, object]:
        """As stored on the version (``Version.gate``) and shown by the API."""
        stored: dict[str, object] = {"passed": self.passed, "outcome": self.outcome.value, "reasons": self.reasons}
        if self.against is not None:
            stored["against"] = self.against
        if self.evaluation_id is not None:
            stored["evaluation_id"] = self.evaluation_id
        if self.base_evaluation_id is not None:
            stored["base_evaluation_id"] = self.base_evaluation_id
            stored["deltas"] = self.deltas
        return stored


def start_gate(session: Session, collection: Collection, version: Version, enqueue: Enqueue) -> None:
    """A gated build is built: evaluate the candidate (the evaluation task then calls ``decide``)."""
    try:
        run, job = runner.new_run(session, collection, version, EvalTrigger.gate)
    except GoldenSetMissing as exc:
        decision = GateDecision(GateOutcome.no_golden_set, [f"{exc.detail}; or publish this version by hand"])
        version.gate = decision.as_json()
        session.commit()
        return
    dispatch(session, enqueue, job, Step.evaluate, run.id)


def compare(
    session: Session, base: EvalRun, candidate: EvalRun, thresholds: dict[str, float], samples: int
) -> GateDecision:
    """The decision for ``candidate`` against the live version's run ``base``."""
    comparison = runner.compare_runs(session, base, candidate, samples)
    passed, reasons = gate_decision(comparison.deltas, thresholds)
    return GateDecision(
        GateOutcome.passed if passed else GateOutcome.regressed,
        reasons,
        evaluation_id=candidate.id,
        against=base.version_number,
        base_evaluation_id=base.id,
        deltas={d.metric: d.delta for d in comparison.deltas if d.metric in thresholds},
    )


def judge(session: Session, run: EvalRun, collection: Collection, version: Version, tools: EvalTools) -> GateDecision:
    """The decision for the candidate evaluated by ``run`` (scoring the live version first if it never was)."""
    live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
    if run.status != JobStatus.succeeded:
        return GateDecision(GateOutcome.evaluation_failed, [f"the evaluation failed: {run.error}"], run.id)
    if live is None or live.id == version.id:
        return GateDecision(GateOutcome.unopposed, ["no live version to compare with"], run.id)
    base = catalog.latest_eval_run(session, live, run.golden_set_id)
    if base is None:  # the live version was never scored on this golden set: score it now
        base, base_job = runner.new_run(session, collection, live, EvalTrigger.gate_baseline)
        session.commit()
        evaluate_now(session, base, base_job, tools)
    if base.status != JobStatus.succeeded:
        return GateDecision(
            GateOutcome.baseline_failed, [f"the live version's evaluation failed: {base.error}"], run.id
        )
    thresholds = {str(k): v for k, v in catalog.collection_config(collection).evaluation.gate.items()}
    return compare(session, base, run, thresholds, tools.bootstrap_samples)


def decide(session: Session, run: EvalRun, tools: EvalTools) -> GateDecision | None:
    """Decide the gate of the candidate evaluated by ``run``: publish it if it passed, record why if not."""
    version = session.get(Version, run.version_id)
    collection = catalog.get_collection_by_id(session, run.collection_id)
    if version is None or collection is None:
        return None
    decision = judge(session, run, collection, version, tools)
    if decision.passed:
        publish_if_newest(session, collection, version, gate=decision.as_json())
    else:
        version.gate = decision.as_json()
        session.commit()
    return decision
