"""Celery tasks: load by id, call ingest/, record state in the catalog, decide retry vs fail.

Every task is idempotent: a redelivered message (acks_late after a worker died) finds
the catalog state and either finishes the work or does nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import catalog
from core import chroma as chroma_access
from core.errors import ConcurrentChange, DocumentParseError
from core.models import (
    Collection,
    DocumentRevision,
    DocumentStatus,
    Job,
    JobKind,
    JobStatus,
    Version,
    VersionState,
    utcnow,
)
from ingest import pipeline
from workers.app import app
from workers.names import TaskName
from workers.resources import Resources, close_resources, init_resources, resources

log = logging.getLogger(__name__)

# Errors that may succeed on a later attempt: the catalog or Chroma briefly unreachable.
RETRYABLE: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, TimeoutError)
MAX_RETRIES = 5


@worker_process_init.connect
def _init_worker_process(**_: Any) -> None:
    init_resources()


@worker_process_shutdown.connect
def _close_worker_process(**_: Any) -> None:
    close_resources()


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
        revision.status = DocumentStatus.parsing
        if revision.job_id and (job := session.get(Job, revision.job_id)) is not None:
            catalog.start_job(session, job)
        session.commit()
        config = catalog.collection_config(collection).ingestion
        try:
            chunks, embedded = pipeline.prepare_revision(
                session, res.blobs, res.embedder(config.embedding_model), collection, revision, config
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
            revision.error = None
            revision.parsed_at = utcnow()
            session.commit()
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


def _after_parse(session: Session, res: Resources, revision: DocumentRevision) -> None:
    """Count the revision into its job; once the collection has nothing left to parse, schedule a build."""
    job = session.get(Job, revision.job_id) if revision.job_id else None
    if job is not None and job.status not in (JobStatus.succeeded, JobStatus.failed):
        catalog.advance_job(session, job.id)
        session.commit()
        session.refresh(job)
        catalog.settle_ingest_job(session, job)
        session.commit()
    if catalog.pending_revision_count(session, revision.collection_id) == 0:
        build_job_id = res.tasks.request_build(session, revision.collection_id, res.settings.worker.build_debounce_s)
        if job is not None and build_job_id:
            session.refresh(job)
            job.result = {**job.result, "build_job_id": build_job_id}
            session.commit()


# ------------------------------------------------------------------- building


@app.task(name=TaskName.build_version, bind=True, max_retries=MAX_RETRIES)
def build_version(self: Task, job_id: str) -> None:
    """Build the collection's next version, then publish it if the policy says so."""
    res = resources()
    with res.db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status in (JobStatus.succeeded, JobStatus.failed):
            return
        collection = catalog.get_collection_by_id(session, job.collection_id or "")
        if collection is None:
            catalog.finish_job(session, job, error="the collection was deleted before the build ran")
            return
        catalog.release_build(session, collection.id, job.id)
        catalog.start_job(session, job)
        session.commit()
        if job.result.get("trigger") != "manual" and _unchanged(session, collection):
            catalog.finish_job(session, job, result={"version": None, "detail": "no document changed"})
            return
        version = catalog.version_for_job(session, job.id) or catalog.create_version(
            session, collection, job.id, chroma_access.version_collection_name
        )
        config = catalog.collection_config(collection)

        def progress(done: int, total: int) -> None:
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
        dropped = _apply_retention(session, res, collection, config.keep_versions)
        session.refresh(version)
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


def _publish_if_newest(session: Session, collection: Collection, version: Version) -> None:
    """Auto-publish, unless a newer version went live meanwhile (builds can finish out of order)."""
    for _ in range(3):
        session.refresh(collection)
        live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
        if live is not None and live.number > version.number:
            return
        try:
            catalog.publish(session, collection, version)
            session.commit()
            return
        except ConcurrentChange:
            session.rollback()
    log.warning("could not publish %s v%d after concurrent changes", collection.name, version.number)


def _apply_retention(session: Session, res: Resources, collection: Collection, keep: int) -> list[int]:
    dropped: list[int] = []
    for old in catalog.versions_to_drop(session, collection, keep):
        chroma_access.drop_collection(res.chroma, old.chroma_collection)
        old.dropped_at = utcnow()
        dropped.append(old.number)
    session.commit()
    return dropped


# ---------------------------------------------------------------- maintenance


@app.task(name=TaskName.reconcile)
def reconcile() -> int:
    """Re-dispatch jobs whose message was lost (broker outage, enqueue after a crash)."""
    res = resources()
    settings = res.settings.worker
    redispatched = 0
    with res.db.session() as session:
        for job in catalog.stale_queued_jobs(session, timedelta(seconds=settings.stuck_after_s)):
            if job.status == JobStatus.running:
                # A running task may legitimately take up to its time limit; only then is it lost.
                limit = (
                    settings.build_soft_time_limit_s if job.kind == JobKind.build else settings.parse_soft_time_limit_s
                )
                if job.started_at and (utcnow() - job.started_at).total_seconds() < limit + 300:
                    continue
            if job.kind == JobKind.ingest:
                pending = [
                    r.id
                    for r in catalog.revisions_of_job(session, job.id)
                    if r.status in (DocumentStatus.queued, DocumentStatus.parsing)
                ]
                if not pending:
                    catalog.settle_ingest_job(session, job)
                    session.commit()
                    continue
                job.attempts += 1
                res.tasks.parse_revisions(session, job.id, pending)
            elif job.kind == JobKind.build:
                catalog.mark_dispatched(session, [job.id])
                session.commit()
                res.tasks.send(TaskName.build_version, [job.id])
            redispatched += 1
    if redispatched:
        log.info("reconciler re-dispatched %d stuck jobs", redispatched)
    return redispatched


@app.task(name=TaskName.prune_query_log)
def prune_query_log() -> int:
    """Delete query log rows older than RAGKEEP_QUERY__LOG_RETENTION_DAYS (daily, from beat)."""
    res = resources()
    with res.db.session() as session:
        removed = catalog.prune_query_log(session, timedelta(days=res.settings.query.log_retention_days))
    log.info("pruned %d query log rows", removed)
    return removed
