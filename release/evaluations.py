"""Evaluations in the lifecycle: starting one, running one, and what the nightly run evaluates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core import catalog
from core.errors import GoldenSetMissing, RagkeepError
from core.models import Collection, EvalRun, EvalTrigger, Job, JobStatus, Version, VersionState, utcnow
from eval import runner
from eval.ragas_adapter import RagasScorer
from query.engine import QueryEngine
from release.dispatch import Audit, Enqueue, Step, dispatch, reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalTools:
    engine: QueryEngine  # evaluations answer through the same engine as /query
    scorer: RagasScorer
    bootstrap_samples: int
    running: Callable[[str], AbstractContextManager[None]]  # the job's heartbeat while it runs


def start_evaluation(
    session: Session, collection: Collection, number: int, enqueue: Enqueue, audit: Audit
) -> tuple[EvalRun, Job]:
    """Evaluate a version by hand on the collection's golden set: the run and its job, committed and sent."""
    run, job = runner.new_run(session, collection, catalog.get_version(session, collection, number), EvalTrigger.manual)
    dispatch(session, enqueue, job, Step.evaluate, run.id, audit, version=number)
    return run, job


def evaluate_now(session: Session, run: EvalRun, job: Job, tools: EvalTools) -> None:
    """Run one evaluation here; record success or a readable failure on run and job."""
    collection = catalog.get_collection_by_id(session, run.collection_id)
    if collection is None:
        return
    catalog.start_job(session, job)
    run.status = JobStatus.running
    session.commit()

    def progress(done: int, total: int) -> None:
        job.progress_done, job.progress_total = done, total
        session.commit()

    try:
        with tools.running(job.id):
            runner.run_evaluation(
                session, tools.engine, tools.scorer, collection, run, tools.bootstrap_samples, on_progress=progress
            )
    except Exception as exc:
        session.rollback()
        log.warning("evaluation %s failed: %r", run.id, exc, exc_info=not isinstance(exc, RagkeepError))
        run.status = JobStatus.failed
        run.error = exc.detail if isinstance(exc, RagkeepError) else reason(exc)
        run.finished_at = utcnow()
        catalog.finish_job(session, job, error=f"evaluation of version {run.version_number} failed: {run.error}")
    else:
        means = {metric: stats["mean"] for metric, stats in run.metrics.items() if stats["mean"] is not None}
        catalog.finish_job(
            session, job, result={"evaluation_id": run.id, "version": run.version_number, "metrics": means}
        )
    session.commit()


def evaluate_run(session: Session, run: EvalRun, tools: EvalTools) -> bool:
    """An evaluation task's work: run ``run`` unless it was recorded; True if it is a gate still to decide."""
    job = session.get(Job, run.job_id) if run.job_id else None
    if run.status not in (JobStatus.succeeded, JobStatus.failed) and job is not None:
        evaluate_now(session, run, job, tools)
    version = session.get(Version, run.version_id)
    return run.trigger == EvalTrigger.gate and version is not None and not version.gate


def nightly_candidates(session: Session, collection: Collection) -> Sequence[Version]:
    """What the nightly run evaluates: the live version (its score moves with prompts and models)
    and every ready version not yet scored on the golden set; nothing without a golden set."""
    config = catalog.collection_config(collection)
    try:
        golden = runner.latest_golden_set(session, collection, config.evaluation.golden_set_revision)
    except GoldenSetMissing:
        return []
    versions = catalog.evaluable_versions(session, collection.id)
    return [
        v for v in versions if v.state == VersionState.live or catalog.latest_eval_run(session, v, golden.id) is None
    ]


def evaluate_nightly(session: Session, collection: Collection, tools: EvalTools) -> int:
    """Evaluate the nightly candidates one after the other; returns how many runs were made."""
    candidates = nightly_candidates(session, collection)
    for version in candidates:
        run, job = runner.new_run(session, collection, version, EvalTrigger.nightly)
        session.commit()
        evaluate_now(session, run, job, tools)
    return len(candidates)
