"""Celery tasks: adapters that load ids, call one ``release`` function, record state and decide retry vs fail.

The lifecycle's rules (one build per collection, gating, publishing, retention, the nightly
choice, reports) live in ``release/``. Every task is idempotent: a redelivered message
(acks_late after a worker died) finds the catalog state and either finishes the work or does nothing.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from enum import StrEnum
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import catalog, email
from core import chroma as chroma_access
from core.errors import DocumentParseError, ServiceUnavailable
from core.models import (
    Collection,
    DocumentRevision,
    DocumentStatus,
    EvalRun,
    Job,
    JobKind,
    JobStatus,
    Version,
    VersionState,
)
from core.settings import get_settings
from ingest import pipeline
from ingest.ocr import OcrOptions
from release import batches, builds, evaluations, gate, intake, reports
from release.dispatch import Step, dispatch_parses, open_job, reason
from workers.app import app
from workers.names import Queue, TaskName, queue_name
from workers.observe import BUILD_SECONDS, BUILDS, DOCUMENTS
from workers.resources import Resources, close_resources, init_resources, resources

log = logging.getLogger(__name__)

# Errors that may succeed on a later attempt: the catalog, Chroma or the blob store briefly unreachable.
RETRYABLE: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, TimeoutError, ServiceUnavailable)
MAX_RETRIES = 5


@worker_process_init.connect
def _init_worker_process(**_: Any) -> None:
    init_resources(parse_helper=_consumes(Queue.ingest))


def _consumes(queue: Queue) -> bool:
    """Whether this worker takes ``queue``'s messages: its ``-Q``, selected before Celery forked its processes.

    A worker of the ingest queue starts each process's parse helper with it. The OCR worker's
    starts with its first scan: it would hold a few hundred MiB idle where scans are rare.
    """
    return queue_name(queue, get_settings().queue_prefix) in app.amqp.queues.consume_from


@worker_process_shutdown.connect
def _close_worker_process(**_: Any) -> None:
    close_resources()


def _stuck_after(res: Resources) -> timedelta:
    return timedelta(seconds=res.settings.worker.stuck_after_s)


def _duplicate(task: Task[Any, Any], job: Job | None) -> bool:
    """True for a first delivery of a job that another worker process is running right now.

    Its heartbeat is fresh, so this message is a duplicate (a redelivery, a second re-send):
    running the job twice side by side would have two builds rebuild one Chroma collection.
    Should that process die, its heartbeat stops and the reconciler sends the job again.
    A retry (``request.retries``) continues this task's own attempt and is never a duplicate.
    """
    if job is None or task.request.retries:
        return False
    if not catalog.alive_elsewhere(job, _stuck_after(resources())):
        return False
    log.warning("%s job %s is running in another worker process; this message is a duplicate", job.kind, job.id)
    return True


def _retry_if_transient(task: Task[Any, Any], exc: Exception) -> None:
    """Raise Celery's retry for an error that may pass (with backoff), while retries last."""
    if isinstance(exc, RETRYABLE) and task.request.retries < MAX_RETRIES:
        raise task.retry(exc=exc, countdown=2**task.request.retries) from exc


def _parse_tools(res: Resources, ocr: bool = False) -> intake.ParseTools:
    options = OcrOptions(res.settings.ocr_threads(), res.settings.ocr.dpi) if ocr else None
    return intake.ParseTools(
        res.blobs, res.embedder, res.parser, res.tasks.enqueue, res.settings.worker.build_debounce_s, options
    )


def _build_tools(res: Resources) -> builds.BuildTools:
    def materialise(
        session: Session, collection: Collection, version: Version, progress: builds.Progress
    ) -> pipeline.BuildResult:
        embedder = res.embedder(version.embedding_model)
        # A document parsed again under a new chunking config is read as its parse read it, OCR included.
        parse = functools.partial(res.parser, ocr=OcrOptions(res.settings.torch_threads(), res.settings.ocr.dpi))
        return pipeline.build_version(
            session, res.chroma, res.blobs, embedder, collection, version, on_progress=progress, parse=parse
        )

    def drop(name: str) -> bool:
        return chroma_access.drop_collection(res.chroma, name)

    return builds.BuildTools(materialise, drop, res.tasks.enqueue, _stuck_after(res))


def _eval_tools(res: Resources) -> evaluations.EvalTools:
    return evaluations.EvalTools(
        res.query_engine, res.scorer, res.settings.eval.bootstrap_samples, res.heartbeat.running
    )


# -------------------------------------------------------------------- parsing


def _parse_failure(exc: BaseException, revision_id: str, res: Resources, ocr: bool = False) -> str:
    if isinstance(exc, SoftTimeLimitExceeded) and ocr:
        limit = res.settings.ocr.soft_time_limit_s
        return f"OCR took longer than {limit} s and was stopped (RAGKEEP_OCR__SOFT_TIME_LIMIT_S)"
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"parsing took longer than {res.settings.worker.parse_soft_time_limit_s} s and was stopped"
    if not isinstance(exc, RETRYABLE):  # a retryable error that outlasted the retries was logged by Celery
        log.warning(
            "document revision %s failed: %s",
            revision_id,
            reason(exc),
            exc_info=not isinstance(exc, DocumentParseError),
        )
    return reason(exc)


@app.task(name=TaskName.parse_document, bind=True, max_retries=MAX_RETRIES)
def parse_document(self: Task[Any, Any], revision_id: str) -> None:
    """Parse, chunk and embed one uploaded document revision (one that needs OCR moves to the ocr queue)."""
    _parse_revision(self, revision_id, ocr=False)


@app.task(name=TaskName.ocr_document, bind=True, max_retries=MAX_RETRIES)
def ocr_document(self: Task[Any, Any], revision_id: str) -> None:
    """Parse a revision that needs OCR (an image, a scanned PDF) page by page, on the ocr queue."""
    _parse_revision(self, revision_id, ocr=True)


def _parse_revision(task: Task[Any, Any], revision_id: str, ocr: bool) -> None:
    res = resources()
    tools = _parse_tools(res, ocr)
    with res.db.session() as session:
        revision = intake.claim_parse(session, revision_id, tools, lambda job: _duplicate(task, job))
        if revision is None:
            return
        _parse_claimed(task, session, revision, tools, ocr)
        _count_parsed(session, [revision_id])
        intake.after_parse(session, revision_id, tools)


def _parse_claimed(
    task: Task[Any, Any], session: Session, revision: DocumentRevision, tools: intake.ParseTools, ocr: bool
) -> None:
    """Parse a claimed revision: ready, failed with its reason, or handed over to OCR (transient errors retry)."""
    res = resources()
    revision_id = revision.id
    try:
        with res.heartbeat.running(revision.job_id):  # an ingest job is alive while one of its files parses
            intake.parse(session, revision, tools)
    except Exception as exc:
        session.rollback()
        _retry_if_transient(task, exc)
        intake.fail_revision(session, revision_id, _parse_failure(exc, revision_id, res, ocr))


def _count_parsed(session: Session, revision_ids: list[str]) -> None:
    for parsed in catalog.revisions_with_documents(session, revision_ids):
        if parsed.status in (DocumentStatus.ready, DocumentStatus.failed):
            DOCUMENTS.labels(parsed.status).inc()


@app.task(name=TaskName.parse_documents, bind=True, max_retries=MAX_RETRIES)
def parse_documents(self: Task[Any, Any], revision_ids: list[str]) -> None:
    """Parse a group of small documents of one upload together (``release.batches``); each fails alone."""
    res = resources()
    tools = _parse_tools(res)
    with res.db.session() as session:
        claimed = batches.claim_parses(session, revision_ids, tools, lambda job: _duplicate(self, job))
        if not claimed:
            return
        if not _parse_group(self, res, session, claimed, tools):
            return
        ids = [r.id for r in claimed]
        _count_parsed(session, ids)
        batches.after_parses(session, ids, tools)


def _parse_group(
    task: Task[Any, Any],
    res: Resources,
    session: Session,
    claimed: list[DocumentRevision],
    tools: intake.ParseTools,
) -> bool:
    """Parse a claimed group while its ingest jobs beat; False when it ran out of time and went out one by one.

    A failure of the group as a whole (not one document's own) is retried when transient, else
    each revision is parsed alone.
    """
    job_ids = sorted({r.job_id for r in claimed if r.job_id})
    try:
        with ExitStack() as beating:  # the ingest jobs are alive while their files parse
            for job_id in job_ids:
                beating.enter_context(res.heartbeat.running(job_id))
            batches.parse_many(session, claimed, tools)
    except SoftTimeLimitExceeded:
        session.rollback()
        _parse_alone(session, claimed, tools)  # each under its own time limit, the slow one fails alone
        return False
    except Exception as exc:
        session.rollback()
        _retry_if_transient(task, exc)
        log.warning("a group of %d documents failed together (%s); parsing them one by one", len(claimed), exc)
        for revision in claimed:
            current = session.get(DocumentRevision, revision.id)
            if current is not None and current.status == DocumentStatus.parsing:
                _parse_claimed(task, session, current, tools, ocr=False)
    return True


def _parse_alone(session: Session, claimed: list[DocumentRevision], tools: intake.ParseTools) -> None:
    """Send each of a group's revisions not yet parsed as a message of its own (the group ran out of time)."""
    pending = []
    for revision in claimed:
        current = session.get(DocumentRevision, revision.id)
        if current is not None and current.status == DocumentStatus.parsing:
            current.status = DocumentStatus.queued
            pending.append(current.id)
    session.commit()
    log.warning("a group of %d documents ran out of time; %d sent again one by one", len(claimed), len(pending))
    for revision_id in pending:
        tools.enqueue(Step.parse, revision_id)


# ------------------------------------------------------------------- building


@app.task(name=TaskName.build_version, bind=True, max_retries=MAX_RETRIES)
def build_version(self: Task[Any, Any], job_id: str) -> None:
    """Build the collection's next version, then publish or gate it as its policy says (``release.builds``)."""
    res = resources()
    with res.db.session() as session:
        job = session.get(Job, job_id)
        if job is None or not builds.may_start(session, job, _stuck_after(res)) or _duplicate(self, job):
            return
        opened = open_job(session, job_id)
        if opened is None:
            return
        tools = _build_tools(res)
        with res.heartbeat.running(job_id):
            try:
                outcome = builds.build(session, opened[0], opened[1], tools)
            except Exception as exc:
                session.rollback()
                _retry_if_transient(self, exc)
                log.exception("build job %s failed", job_id)
                outcome = builds.fail(session, job_id, reason(exc), tools)
    _observe_build(outcome)


def _observe_build(outcome: builds.BuildOutcome) -> None:
    """The build's result and duration in the worker's Prometheus metrics."""
    if outcome.state is not None:
        BUILDS.labels("failed" if outcome.state == VersionState.failed else "succeeded").inc()
    if outcome.build_seconds is not None:
        BUILD_SECONDS.observe(outcome.build_seconds)


# ---------------------------------------------------------------- maintenance


class Recovery(StrEnum):
    """What the reconciler did with one stale job."""

    resent = "re-sent"
    unsent = "not re-sent (broker unreachable; tried again after the stuck time)"
    claimed = "left alone (another reconciler re-sent it)"
    settled = "settled (nothing left to run)"
    failed = "failed (cannot be re-sent)"
    unknown = "left as they are (a kind the reconciler cannot send)"


@app.task(name=TaskName.reconcile)
def reconcile() -> dict[str, int]:
    """Dispatch again the jobs whose message was lost (broker outage, a killed worker, enqueue after a crash).

    Returns (and logs) how many jobs of each kind had which outcome, e.g. ``{"report re-sent": 1}``.
    """
    res = resources()
    outcomes: Counter[tuple[str, Recovery]] = Counter()
    with res.db.session() as session:
        for job in catalog.stale_jobs(session, _stuck_after(res)):
            if not catalog.claim_stale_job(session, job.id, _stuck_after(res)):
                session.commit()
                outcomes[(job.kind, Recovery.claimed)] += 1
                continue
            session.commit()
            outcomes[(job.kind, _redispatch(session, res, job))] += 1
    if outcomes:
        by_outcome: dict[Recovery, list[str]] = {}
        for (kind, outcome), count in sorted(outcomes.items()):
            by_outcome.setdefault(outcome, []).append(f"{count} {kind}")
        log.info(
            "reconciler: %s", "; ".join(f"{outcome.value}: {', '.join(kinds)}" for outcome, kinds in by_outcome.items())
        )
    return {f"{kind} {outcome.value}": count for (kind, outcome), count in outcomes.items()}


def _redispatch(session: Session, res: Resources, job: Job) -> Recovery:
    """Send the message that runs ``job`` again (its task finds the catalog state and carries on).

    The caller claimed the job (``catalog.claim_stale_job``), so no other reconciler sends it too.
    """
    task: TaskName
    arg = job.id
    if job.kind == JobKind.ingest:
        pending = catalog.requeue_lost_revisions(session, job.id)
        if not pending:
            catalog.settle_ingest_job(session, job)
            session.commit()
            return Recovery.settled
        job.attempts += 1
        sent = dispatch_parses(session, res.tasks.enqueue, job.id, pending)
        return Recovery.resent if sent else Recovery.unsent
    if job.kind == JobKind.build:
        task = TaskName.build_version
    elif job.kind == JobKind.report:
        task = TaskName.send_report
    elif job.kind == JobKind.evaluate:
        run = catalog.eval_run_for_job(session, job.id)
        if run is None:
            catalog.finish_job(session, job, error="its evaluation run no longer exists; start a new evaluation")
            session.commit()
            log.warning("evaluation job %s has no evaluation run; marked failed", job.id)
            return Recovery.failed
        if run.status in (JobStatus.succeeded, JobStatus.failed):  # the run was recorded, its job not
            failed = run.status == JobStatus.failed
            catalog.finish_job(session, job, error=f"evaluation failed: {run.error}" if failed else None)
            session.commit()
            return Recovery.settled
        task, arg = TaskName.evaluate, run.id
    else:
        log.warning("job %s is of kind %r, which the reconciler cannot send", job.id, job.kind)
        return Recovery.unknown
    return Recovery.resent if res.tasks.send(task, [arg]) else Recovery.unsent


@app.task(name=TaskName.prune_query_log)
def prune_query_log() -> int:
    """Delete query log rows older than RAGKEEP_QUERY__LOG_RETENTION_DAYS (daily, from beat)."""
    res = resources()
    with res.db.session() as session:
        removed = catalog.prune_query_log(session, timedelta(days=res.settings.query.log_retention_days))
    log.info("pruned %d query log rows", removed)
    return removed


# ----------------------------------------------------------------- evaluation


@app.task(name=TaskName.evaluate, bind=True, max_retries=MAX_RETRIES)
def evaluate(self: Task[Any, Any], run_id: str) -> None:
    """Evaluate a version on a golden set; for a gated build, then decide whether it goes live."""
    res = resources()
    with res.db.session() as session:
        run = session.get(EvalRun, run_id)
        if run is None or _duplicate(self, session.get(Job, run.job_id) if run.job_id else None):
            return
        if evaluations.evaluate_run(session, run, _eval_tools(res)):
            gate.decide(session, run, _eval_tools(res))


@app.task(name=TaskName.nightly)
def nightly() -> int:
    """Beat: evaluate and report every collection (one task per collection, spread over workers)."""
    res = resources()
    with res.db.session() as session:
        ids = catalog.collection_ids(session)
    for collection_id in ids:
        res.tasks.send(TaskName.nightly_collection, [collection_id])
    return len(ids)


@app.task(name=TaskName.nightly_collection)
def nightly_collection(collection_id: str) -> None:
    """Evaluate the live version and every ready version not yet scored on the golden set; then report."""
    res = resources()
    with res.db.session() as session:
        collection = catalog.get_collection_by_id(session, collection_id)
        if collection is None:
            return
        evaluations.evaluate_nightly(session, collection, _eval_tools(res))
        reports.request_report(session, collection, res.tasks.enqueue)


# -------------------------------------------------------------------- reports


@app.task(name=TaskName.send_report, bind=True, max_retries=None)
def send_report(self: Task[Any, Any], job_id: str) -> None:
    """Build the collection's report (kept in the catalog) and email it to the owners; retry SMTP failures."""
    res = resources()
    with res.db.session() as session:
        if _duplicate(self, session.get(Job, job_id)) or (opened := open_job(session, job_id)) is None:
            return
        job, collection = opened
        with res.heartbeat.running(job.id):
            try:
                reports.deliver(session, job, collection, res.settings, res.embedder)
            except email.SEND_ERRORS as exc:
                delay = reports.retry_delay(res.settings, self.request.retries)
                if delay is None:
                    reports.give_up(session, job, collection)
                    return
                reports.defer(session, job, delay)  # waiting, not lost
                raise self.retry(exc=exc, countdown=delay) from exc
