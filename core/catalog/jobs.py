"""Jobs repository: job books, dispatch and heartbeat marks, stale jobs, the one pending build per collection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from core.errors import JobNotFound
from core.models import Collection, Document, DocumentRevision, DocumentStatus, Job, JobKind, JobStatus, utcnow


def create_job(session: Session, kind: JobKind, collection_id: str | None, total: int = 0) -> Job:
    job = Job(kind=kind, collection_id=collection_id, progress_total=total)
    session.add(job)
    session.flush()
    return job


def job_missing(job_id: str) -> JobNotFound:
    """What an unknown job id answers (also for one the caller may not see)."""
    return JobNotFound(f"job {job_id!r} does not exist")


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise job_missing(job_id)
    return job


def start_job(session: Session, job: Job) -> None:
    """Mark the job running. An ingest job's attempts count its dispatches, not its documents.

    Starting (again, after a redelivery) is also the job's first heartbeat.
    """
    job.heartbeat_at = utcnow()
    if job.status == JobStatus.queued:
        job.status = JobStatus.running
        job.started_at = utcnow()
        job.attempts += 1
    elif job.kind == JobKind.build:
        job.attempts += 1


def claim_queued_job(session: Session, job_id: str) -> bool:
    """Start a queued job (compare-and-set): False when another delivery of its message started it first."""
    now = utcnow()
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(status=JobStatus.running, started_at=now, heartbeat_at=now, attempts=Job.attempts + 1)
    ).rowcount  # type: ignore[attr-defined]
    return bool(claimed)


def finish_job(session: Session, job: Job, error: str | None = None, result: dict[str, Any] | None = None) -> None:
    job.status = JobStatus.failed if error else JobStatus.succeeded
    job.error = error
    if result is not None:
        job.result = {**job.result, **result}
    job.finished_at = utcnow()
    job.progress_done = max(job.progress_done, job.progress_total)


def advance_job(session: Session, job_id: str, done: int = 1) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(progress_done=Job.progress_done + done))


def mark_dispatched(session: Session, job_ids: Sequence[str], delay_s: float = 0.0) -> None:
    """The jobs' messages were (or are about to be) sent, due in ``delay_s`` (a countdown)."""
    due = utcnow() + timedelta(seconds=delay_s)
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(dispatched_at=due))


def claim_stale_job(session: Session, job_id: str, stuck_after: timedelta) -> bool:
    """Mark a stale job dispatched now; False if something dispatched it since it was found stale.

    Two reconcilers can run at once (a backlog after a worker restart, several workers):
    only the one that claims a job sends it, so a build never runs twice side by side.
    """
    cutoff = utcnow() - stuck_after
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, func.coalesce(Job.dispatched_at, Job.created_at) < cutoff)
        .values(dispatched_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    return bool(claimed)


def alive_elsewhere(job: Job, within: timedelta) -> bool:
    """A running job that a worker process reported alive within ``within``: it is being run right now."""
    last = job.heartbeat_at or job.started_at
    return job.status == JobStatus.running and last is not None and utcnow() - last < within


def touch_jobs(session: Session, job_ids: Sequence[str]) -> None:
    """A worker process's sign of life for the running jobs it holds (see ``stale_jobs``)."""
    session.execute(
        update(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.running).values(heartbeat_at=utcnow())
    )


def stale_jobs(session: Session, stuck_after: timedelta) -> Sequence[Job]:
    """Unfinished jobs whose message was lost, oldest first: the reconciler dispatches them again.

    Nothing dispatched any of them within ``stuck_after``, and:

    - a queued job (any kind) never started: its message was lost before a worker took it;
    - a running job has had no heartbeat within ``stuck_after``: the worker process running
      it died (a killed worker, a lost host). An ingest job beats while any of its documents
      parses, so one that goes quiet with documents still queued or parsing lost them.
    """
    cutoff = utcnow() - stuck_after
    return session.scalars(
        select(Job)
        .where(
            func.coalesce(Job.dispatched_at, Job.created_at) < cutoff,
            or_(
                Job.status == JobStatus.queued,
                and_(
                    Job.status == JobStatus.running,
                    func.coalesce(Job.heartbeat_at, Job.started_at, Job.created_at) < cutoff,
                ),
            ),
        )
        .order_by(Job.created_at)
    ).all()


def settle_ingest_job(session: Session, job: Job) -> bool:
    """Finish an ingest job once none of its revisions is still queued or parsing."""
    # Counted in the database: called after every parsed document, it read all the job's revisions each time.
    by_status: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(DocumentRevision.status, func.count())
            .where(DocumentRevision.job_id == job.id)
            .group_by(DocumentRevision.status)
        )
    }
    if by_status.get(DocumentStatus.queued) or by_status.get(DocumentStatus.parsing):
        return False
    failures = (
        list(
            session.scalars(
                select(DocumentRevision).where(
                    DocumentRevision.job_id == job.id, DocumentRevision.status == DocumentStatus.failed
                )
            )
        )
        if by_status.get(DocumentStatus.failed)
        else []
    )
    total = sum(by_status.values())
    error = None
    if failures:
        names = {
            d.id: d.filename
            for d in session.scalars(select(Document).where(Document.id.in_([r.document_id for r in failures])))
        }
        reasons = "; ".join(f"{names.get(r.document_id, r.document_id)}: {r.error}" for r in failures)
        error = f"{len(failures)} of {total} documents failed: {reasons}"
    finish_job(
        session,
        job,
        error=error,
        result={
            "failed_documents": [
                {"document_id": r.document_id, "revision": r.number, "error": r.error} for r in failures
            ]
        },
    )
    return True


def claim_build(session: Session, collection_id: str) -> Job | None:
    """Create the collection's one pending build job, or return None if one is already pending.

    The pending build absorbs every change made until it starts, which is what batches
    many uploads into one version.
    """
    job = create_job(session, JobKind.build, collection_id, total=0)
    claimed = session.execute(
        update(Collection)
        .where(Collection.id == collection_id, Collection.pending_build_job_id.is_(None))
        .values(pending_build_job_id=job.id)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        session.delete(job)
        session.flush()
        return None
    return job


def other_running_build(session: Session, job: Job, alive_after: datetime) -> Job | None:
    """Another build of ``job``'s collection that is running, with a sign of life after ``alive_after``.

    A build whose worker died stays ``running`` until the reconciler dispatches it again;
    its heartbeat stopped, so it does not hold up the collection's next build.
    """
    return session.scalar(
        select(Job).where(
            Job.kind == JobKind.build,
            Job.collection_id == job.collection_id,
            Job.status == JobStatus.running,
            Job.id != job.id,
            func.coalesce(Job.heartbeat_at, Job.started_at) > alive_after,
        )
    )


def release_build(session: Session, collection_id: str, job_id: str) -> None:
    """The pending build has started: later changes must schedule a new one."""
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id, Collection.pending_build_job_id == job_id)
        .values(pending_build_job_id=None)
    )


def failed_jobs_since(session: Session, collection_id: str, since: datetime) -> Sequence[Job]:
    """The collection's jobs that failed since ``since``."""
    return session.scalars(
        select(Job).where(Job.collection_id == collection_id, Job.status == JobStatus.failed, Job.finished_at >= since)
    ).all()


def waiting_builds(session: Session, collection_id: str) -> list[str]:
    """Queued builds of the collection whose message is due: they wait (or are about to) for a running one.

    A build sent with a countdown (the upload debounce) is not due yet and keeps its countdown.
    """
    return list(
        session.scalars(
            select(Job.id)
            .where(
                Job.kind == JobKind.build,
                Job.collection_id == collection_id,
                Job.status == JobStatus.queued,
                func.coalesce(Job.dispatched_at, Job.created_at) <= utcnow(),
            )
            .order_by(Job.created_at)
        )
    )


def job_counts(session: Session) -> Sequence[tuple[str, str, int]]:
    """(kind, status, how many) over every job."""
    return session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).tuples().all()
