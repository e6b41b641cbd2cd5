"""Celery tasks: load by id, call ingest/, record state in the catalog, decide retry vs fail.

Every task is idempotent: a redelivered message (acks_late after a worker died) finds
the catalog state and either finishes the work or does nothing.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections import Counter
from datetime import timedelta
from enum import StrEnum
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import catalog, email
from core import chroma as chroma_access
from core.errors import ConcurrentChange, DocumentParseError, GoldenSetMissing, RagkeepError
from core.models import (
    Collection,
    DocumentRevision,
    DocumentStatus,
    EvalRun,
    Job,
    JobKind,
    JobStatus,
    Report,
    Version,
    VersionState,
    utcnow,
)
from eval import runner
from eval.report import CHART_CID, build_report
from ingest import pipeline
from workers.app import app
from workers.names import TaskName
from workers.observe import BUILD_SECONDS, BUILDS, DOCUMENTS
from workers.resources import Resources, close_resources, init_resources, resources

log = logging.getLogger(__name__)

# Errors that may succeed on a later attempt: the catalog or Chroma briefly unreachable.
RETRYABLE: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, TimeoutError)
MAX_RETRIES = 5
BUILD_WAIT_S = 3.0  # a build waiting for another build of its collection checks again after this


@worker_process_init.connect
def _init_worker_process(**_: Any) -> None:
    init_resources()


@worker_process_shutdown.connect
def _close_worker_process(**_: Any) -> None:
    close_resources()


def _open_job(session: Session, job_id: str) -> tuple[Job, Collection] | None:
    """The job and its collection, or None when there is nothing (left) to do; marks the job running."""
    job = session.get(Job, job_id)
    if job is None or job.status in (JobStatus.succeeded, JobStatus.failed):
        return None
    collection = catalog.get_collection_by_id(session, job.collection_id or "")
    if collection is None:
        catalog.finish_job(session, job, error="the collection was deleted before this job ran")
        return None
    catalog.start_job(session, job)
    return job, collection


def _duplicate(task: Task, job: Job | None) -> bool:
    """True for a first delivery of a job that another worker process is running right now.

    Its heartbeat is fresh, so this message is a duplicate (a redelivery, a second re-send):
    running the job twice side by side would have two builds rebuild one Chroma collection.
    Should that process die, its heartbeat stops and the reconciler sends the job again.
    A retry (``request.retries``) continues this task's own attempt and is never a duplicate.
    """
    if job is None or task.request.retries:
        return False
    if not catalog.alive_elsewhere(job, timedelta(seconds=resources().settings.worker.stuck_after_s)):
        return False
    log.warning("%s job %s is running in another worker process; this message is a duplicate", job.kind, job.id)
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DocumentParseError):
        return exc.detail
    return f"internal error: {type(exc).__name__}: {str(exc)[:500]}"


# -------------------------------------------------------------------- parsing


@app.task(name=TaskName.parse_document, bind=True, max_retries=MAX_RETRIES)
def parse_document(self: Task, revision_id: str) -> None:
    """Parse, chunk and embed one uploaded document revision."""
    res = resources()
    with res.db.session() as session:
        revision = session.get(DocumentRevision, revision_id)
        if revision is None:
            log.info("revision %s no longer exists (collection deleted?)", revision_id)
            return
        collection = catalog.get_collection_by_id(session, revision.collection_id)
        if collection is None:
            return
        if revision.status in (DocumentStatus.ready, DocumentStatus.failed):
            _after_parse(session, res, revision)  # redelivery after the result was recorded
            return
        job = session.get(Job, revision.job_id) if revision.job_id else None
        # Parsing already, by a process of a job that is alive: this message is a duplicate (the
        # reconciler re-sent it while the original waited); else a dead worker's: take it over.
        if not catalog.claim_revision(session, revision.id) and _duplicate(self, job):
            session.rollback()
            return
        session.refresh(revision)
        if revision.status in (DocumentStatus.ready, DocumentStatus.failed):  # parsed meanwhile
            _after_parse(session, res, revision)
            return
        revision.status = DocumentStatus.parsing
        if job is not None:
            catalog.start_job(session, job)
        session.commit()
        config = catalog.collection_config(collection).ingestion
        try:
            with res.heartbeat.running(revision.job_id):  # an ingest job is alive while one of its files parses
                chunks, embedded, found = pipeline.prepare_revision(
                    session,
                    res.blobs,
                    res.embedder(config.embedding_model),
                    collection,
                    revision,
                    config,
                    res.parser,
                )
        except RETRYABLE as exc:
            session.rollback()
            if self.request.retries < MAX_RETRIES:
                raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
            _fail_revision(session, revision_id, _reason(exc))
        except SoftTimeLimitExceeded:
            session.rollback()
            _fail_revision(
                session,
                revision_id,
                f"parsing took longer than {res.settings.worker.parse_soft_time_limit_s} s and was stopped",
            )
        except Exception as exc:
            session.rollback()
            log.warning(
                "document revision %s failed: %s",
                revision_id,
                _reason(exc),
                exc_info=not isinstance(exc, DocumentParseError),
            )
            _fail_revision(session, revision_id, _reason(exc))
        else:
            revision.status = DocumentStatus.ready
            revision.chunk_count = chunks
            revision.embedded_count = embedded
            revision.pii_counts = found
            revision.error = None
            revision.parsed_at = utcnow()
            session.commit()
            DOCUMENTS.labels("ready").inc()
            log.info(
                "parsed %s revision %d: %d chunks, %d embedded",
                revision.document_id,
                revision.number,
                chunks,
                embedded,
                extra={"collection": collection.name, "document_id": revision.document_id},
            )
        revision = session.get(DocumentRevision, revision_id)
        if revision is not None:
            _after_parse(session, res, revision)


def _fail_revision(session: Session, revision_id: str, reason: str) -> None:
    revision = session.get(DocumentRevision, revision_id)
    if revision is None:
        return
    revision.status = DocumentStatus.failed
    revision.error = reason
    revision.parsed_at = utcnow()
    session.commit()
    DOCUMENTS.labels("failed").inc()


def _after_parse(session: Session, res: Resources, revision: DocumentRevision) -> None:
    """Count the revision into its job; once the collection has nothing left to parse, schedule a build.

    The build job's id is written onto the ingest job before that job is settled, so a client
    that sees the ingest job finished also sees which build will include its documents.
    """
    job = session.get(Job, revision.job_id) if revision.job_id else None
    open_job = job is not None and job.status not in (JobStatus.succeeded, JobStatus.failed)
    if job is not None and open_job:
        catalog.advance_job(session, job.id)
        session.commit()
    if catalog.pending_revision_count(session, revision.collection_id) == 0:
        build_job_id = res.tasks.request_build(session, revision.collection_id, res.settings.worker.build_debounce_s)
        if job is not None and build_job_id:
            session.refresh(job)
            job.result = {**job.result, "build_job_id": build_job_id}
            session.commit()
    if job is not None and open_job:
        session.refresh(job)
        catalog.settle_ingest_job(session, job)
        session.commit()


# ------------------------------------------------------------------- building


@app.task(name=TaskName.build_version, bind=True, max_retries=MAX_RETRIES)
def build_version(self: Task, job_id: str) -> None:
    """Build the collection's next version, then publish it if the policy says so.

    One build per collection at a time: while another one runs, this one waits (still
    pending, so changes keep joining it) and then finds out whether anything is left to build.
    """
    res = resources()
    with res.db.session() as session:
        job = session.get(Job, job_id)
        if job is not None and job.status == JobStatus.queued:
            # A build without a heartbeat for this long lost its worker: it holds nothing up.
            alive_after = utcnow() - timedelta(seconds=res.settings.worker.stuck_after_s)
            if catalog.other_running_build(session, job, alive_after) is not None:
                # Waiting, not lost: the reconciler leaves it.
                catalog.mark_dispatched(session, [job.id], delay_s=BUILD_WAIT_S)
                session.commit()
                res.tasks.send(TaskName.build_version, [job.id], countdown=BUILD_WAIT_S)
                return
        if _duplicate(self, job):
            return
        opened = _open_job(session, job_id)
        if opened is None:
            return
        job, collection = opened
        with res.heartbeat.running(job.id):
            _build(self, session, res, job, collection)


def _build(self: Task, session: Session, res: Resources, job: Job, collection: Collection) -> None:
    """The body of ``build_version`` for a job it opened (under the job's heartbeat)."""
    catalog.release_build(session, collection.id, job.id)
    session.commit()
    if job.result.get("trigger") != "manual" and _unchanged(session, collection):
        catalog.finish_job(session, job, result={"version": None, "detail": "no document changed"})
        return
    version = catalog.version_for_job(session, job.id) or catalog.create_version(
        session, collection, job.id, chroma_access.version_collection_name
    )
    config = catalog.collection_config(collection)

    last_commit = 0.0

    def progress(done: int, total: int) -> None:
        """Recorded at most once a second (a commit per document would slow big builds down)."""
        nonlocal last_commit
        if done < total and time.monotonic() - last_commit < 1.0:
            return
        last_commit = time.monotonic()
        job.progress_done, job.progress_total = done, total
        session.commit()

    try:
        if version.state == VersionState.building:  # else redelivered after the build was recorded
            pipeline.build_version(
                session,
                res.chroma,
                res.blobs,
                res.embedder(version.embedding_model),
                collection,
                version,
                on_progress=progress,
                parse=res.parser,
            )
            session.commit()
    except RETRYABLE as exc:
        session.rollback()
        if self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
        _fail_version(session, res, job, version, exc)
        return
    except Exception as exc:
        session.rollback()
        log.exception("build of %s v%d failed", collection.name, version.number)
        _fail_version(session, res, job, version, exc)
        return

    if config.publish_policy == "auto":
        _publish_if_newest(session, collection, version)
    elif config.publish_policy == "gated":
        _start_gate(session, res, collection, version)
    dropped = _apply_retention(session, res, collection, config.keep_versions)
    session.refresh(version)
    BUILDS.labels("succeeded").inc()
    if version.build_seconds is not None:
        BUILD_SECONDS.observe(version.build_seconds)
    log.info(
        "built %s v%d: %d chunks in %.1f s, %s",
        collection.name,
        version.number,
        version.chunk_count,
        version.build_seconds or 0.0,
        version.state,
        extra={"collection": collection.name, "version": version.number},
    )
    catalog.finish_job(
        session,
        job,
        result={
            "version": version.number,
            "state": version.state,
            "chunk_count": version.chunk_count,
            "dropped_versions": dropped,
        },
    )


def _unchanged(session: Session, collection: Collection) -> bool:
    """True when a build would repeat the newest version (or, with no version yet, hold nothing)."""
    current = {doc.id: rev.id for doc, rev in catalog.buildable_revisions(session, collection.id)}
    states = [VersionState.live, VersionState.ready, VersionState.archived]
    latest = catalog.latest_version(session, collection.id, states)
    if latest is None:
        return not current  # every document of the first upload failed: no empty version
    if latest.config != catalog.collection_config(collection).ingestion.model_dump():
        return False
    built = {vd.document_id: vd.revision_id for vd in catalog.version_documents(session, latest)}
    return built == current


def _fail_version(session: Session, res: Resources, job: Job, version: Version, exc: BaseException) -> None:
    chroma_access.drop_collection(res.chroma, version.chroma_collection)
    version = session.get(Version, version.id) or version
    version.state = VersionState.failed
    version.error = _reason(exc)
    version.dropped_at = utcnow()
    catalog.finish_job(
        session,
        session.get(Job, job.id) or job,
        error=f"version {version.number}: {version.error}",
        result={"version": version.number, "state": VersionState.failed},
    )
    session.commit()
    BUILDS.labels("failed").inc()


def _publish_if_newest(
    session: Session, collection: Collection, version: Version, gate: dict[str, Any] | None = None
) -> None:
    """Auto-publish, unless a newer version went live meanwhile (builds can finish out of order).

    ``gate``, a passed gate decision, is recorded in the same commit as the publish, so
    nobody sees a version that passed its gate and is not live yet.
    """
    for _ in range(3):
        session.refresh(collection)
        if gate is not None:
            version.gate = gate
        live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
        if live is not None and live.number > version.number:
            session.commit()
            return
        try:
            catalog.publish(session, collection, version)
            session.commit()
            return
        except ConcurrentChange:
            session.rollback()
    if gate is not None:
        version.gate = gate
        session.commit()
    log.warning("could not publish %s v%d after concurrent changes", collection.name, version.number)


def _apply_retention(session: Session, res: Resources, collection: Collection, keep: int) -> list[int]:
    """Drop the versions beyond ``keep``; a dropped version's vectors stay while a kept delta
    version still reads them as its base, and go with the last such delta."""
    dropped: list[Version] = []
    for old in catalog.versions_to_drop(session, collection, keep):
        old.dropped_at = utcnow()
        dropped.append(old)
    session.flush()
    in_use = catalog.collections_in_use(session, collection.id)
    for name in {v.chroma_collection for v in [*dropped, *catalog.dropped_bases(session, collection.id)]} - in_use:
        chroma_access.drop_collection(res.chroma, name)
    session.commit()
    return [v.number for v in dropped]


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
    limits = res.settings.worker
    outcomes: Counter[tuple[str, Recovery]] = Counter()
    with res.db.session() as session:
        for job in catalog.stale_jobs(session, timedelta(seconds=limits.stuck_after_s)):
            if not catalog.claim_stale_job(session, job.id, timedelta(seconds=limits.stuck_after_s)):
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
        return Recovery.resent if res.tasks.parse_revisions(session, job.id, pending) else Recovery.unsent
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


def _evaluate_now(session: Session, res: Resources, run: EvalRun, job: Job) -> None:
    """Run one evaluation in this task; record success or a readable failure on run and job."""
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
        with res.heartbeat.running(job.id):
            runner.run_evaluation(
                session,
                res.query_engine,
                res.scorer,
                collection,
                run,
                res.settings.eval.bootstrap_samples,
                on_progress=progress,
            )
    except Exception as exc:
        session.rollback()
        log.warning("evaluation %s failed: %r", run.id, exc, exc_info=not isinstance(exc, RagkeepError))
        run.status = JobStatus.failed
        run.error = exc.detail if isinstance(exc, RagkeepError) else _reason(exc)
        run.finished_at = utcnow()
        catalog.finish_job(session, job, error=f"evaluation of version {run.version_number} failed: {run.error}")
    else:
        means = {metric: stats["mean"] for metric, stats in run.metrics.items() if stats["mean"] is not None}
        catalog.finish_job(
            session, job, result={"evaluation_id": run.id, "version": run.version_number, "metrics": means}
        )
    session.commit()


def _decide_gate(session: Session, res: Resources, run: EvalRun) -> None:
    """publish_policy gated: the candidate goes live only if no gated metric regresses against live."""
    version = session.get(Version, run.version_id)
    collection = catalog.get_collection_by_id(session, run.collection_id)
    if version is None or collection is None:
        return
    config = catalog.collection_config(collection)
    decision: dict[str, Any]
    live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
    if run.status != JobStatus.succeeded:
        decision = {"passed": False, "reasons": [f"the evaluation failed: {run.error}"], "evaluation_id": run.id}
    elif live is None or live.id == version.id:
        decision = {"passed": True, "reasons": ["no live version to compare with"], "evaluation_id": run.id}
    else:
        base = catalog.latest_eval_run(session, live, run.golden_set_id)
        if base is None:  # the live version was never scored on this golden set: score it now
            base, base_job = runner.new_run(session, collection, live, "gate-baseline")
            session.commit()
            _evaluate_now(session, res, base, base_job)
        if base.status != JobStatus.succeeded:
            decision = {
                "passed": False,
                "reasons": [f"the live version's evaluation failed: {base.error}"],
                "evaluation_id": run.id,
            }
        else:
            decision = runner.gate(
                session,
                base,
                run,
                {str(k): v for k, v in config.evaluation.gate.items()},
                res.settings.eval.bootstrap_samples,
            )
    if decision["passed"]:
        _publish_if_newest(session, collection, version, gate=decision)
    else:
        version.gate = decision
        session.commit()


def _start_gate(session: Session, res: Resources, collection: Collection, version: Version) -> None:
    try:
        run, job = runner.new_run(session, collection, version, "gate")
    except GoldenSetMissing as exc:
        version.gate = {"passed": False, "reasons": [f"{exc.detail}; or publish this version by hand"]}
        session.commit()
        return
    catalog.mark_dispatched(session, [job.id])
    session.commit()
    res.tasks.send(TaskName.evaluate, [run.id])


@app.task(name=TaskName.evaluate, bind=True, max_retries=MAX_RETRIES)
def evaluate(self: Task, run_id: str) -> None:
    """Evaluate a version on a golden set; for a gated build, then decide whether it goes live."""
    res = resources()
    with res.db.session() as session:
        run = session.get(EvalRun, run_id)
        if run is None:
            return
        job = session.get(Job, run.job_id) if run.job_id else None
        if _duplicate(self, job):
            return
        if run.status not in (JobStatus.succeeded, JobStatus.failed) and job is not None:
            _evaluate_now(session, res, run, job)
        version = session.get(Version, run.version_id)
        if run.trigger == "gate" and version is not None and not version.gate:
            _decide_gate(session, res, run)


@app.task(name=TaskName.nightly)
def nightly() -> int:
    """Beat: evaluate and report every collection (one task per collection, spread over workers)."""
    res = resources()
    with res.db.session() as session:
        ids = list(session.scalars(select(Collection.id)))
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
        config = catalog.collection_config(collection)
        try:
            golden = runner.latest_golden_set(session, collection, config.evaluation.golden_set_revision)
        except GoldenSetMissing:
            golden = None
        if golden is not None:
            candidates = session.scalars(
                select(Version)
                .where(
                    Version.collection_id == collection.id,
                    Version.dropped_at.is_(None),
                    Version.state.in_([VersionState.live, VersionState.ready]),
                )
                .order_by(Version.number)
            ).all()
            for version in candidates:
                # The live version nightly (its score moves with prompts and models); others once.
                if version.state == VersionState.ready and catalog.latest_eval_run(session, version, golden.id):
                    continue
                run, job = runner.new_run(session, collection, version, "nightly")
                session.commit()
                _evaluate_now(session, res, run, job)
        report_job = catalog.create_job(session, JobKind.report, collection.id, total=1)
        catalog.mark_dispatched(session, [report_job.id])
        session.commit()
    res.tasks.send(TaskName.send_report, [report_job.id])


# -------------------------------------------------------------------- reports


@app.task(name=TaskName.send_report, bind=True, max_retries=None)
def send_report(self: Task, job_id: str) -> None:
    """Build the collection's report (kept in the catalog) and email it to the owners; retry SMTP failures."""
    res = resources()
    with res.db.session() as session:
        if _duplicate(self, session.get(Job, job_id)):
            return
        opened = _open_job(session, job_id)
        if opened is None:
            return
        job, collection = opened
        with res.heartbeat.running(job.id):
            _send_report(self, session, res, job, collection)


def _send_report(self: Task, session: Session, res: Resources, job: Job, collection: Collection) -> None:
    """The body of ``send_report`` for a job it opened (under the job's heartbeat)."""
    report = session.get(Report, job.result.get("report_id", "")) if job.result.get("report_id") else None
    if report is None:
        rendered = build_report(session, collection, res.settings.eval)
        report = Report(
            collection_id=collection.id,
            subject=rendered.subject,
            recipients=list(collection.owners),
            html=rendered.html,
            text=rendered.text,
            chart_png=rendered.chart_png,
            job_id=job.id,
        )
        session.add(report)
        session.flush()
        job.result = {**job.result, "report_id": report.id}
        session.commit()
    if not report.recipients:
        report.status = "no_recipients"
        catalog.finish_job(session, job, result={"report_id": report.id, "status": report.status})
        return
    report.attempts += 1
    message = email.build_message(
        res.settings.smtp.sender,
        report.recipients,
        report.subject,
        report.text,
        report.html,
        report.chart_png,
        CHART_CID if report.chart_png else None,
    )
    try:
        email.send(res.settings.smtp, message)
    except (OSError, smtplib.SMTPException) as exc:
        report.error = f"{type(exc).__name__}: {exc}"[:500]
        smtp = res.settings.smtp
        if self.request.retries < smtp.retries:
            countdown = min(600.0, smtp.retry_delay_s * 2**self.request.retries)
            catalog.mark_dispatched(session, [job.id], delay_s=countdown)  # waiting, not lost
            session.commit()
            raise self.retry(exc=exc, countdown=countdown) from exc
        report.status = "failed"
        catalog.finish_job(
            session,
            job,
            error=f"could not send the report after {report.attempts} attempts "
            f"({report.error}); it stays readable at /collections/{collection.name}/reports/latest",
            result={"report_id": report.id, "status": report.status},
        )
        return
    report.status, report.sent_at, report.error = "sent", utcnow(), None
    catalog.finish_job(
        session, job, result={"report_id": report.id, "status": report.status, "recipients": report.recipients}
    )
