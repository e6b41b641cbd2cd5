"""How work leaves the catalog: commit the job first, send its message after.

A job row always exists before its message does; a message lost on the way (broker down,
a crash between commit and send) is sent again by the reconciler (``workers.tasks.reconcile``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session

from core import catalog
from core.errors import DocumentParseError
from core.filetypes import IMAGE_KINDS
from core.models import Collection, DocumentRevision, Job, JobStatus


class Step(StrEnum):
    """A unit of asynchronous work; the worker side maps each to its Celery task."""

    parse = "parse"  # argument: a document revision id
    ocr = "ocr"  # argument: a document revision id that needs OCR (parsed on the ``ocr`` queue)
    build = "build"  # argument: a build job id
    evaluate = "evaluate"  # argument: an evaluation run id
    report = "report"  # argument: a report job id


class Enqueue(Protocol):
    """Send one step's message; False when the broker could not take it (the reconciler retries)."""

    def __call__(self, step: Step, arg: str, countdown: float | None = None) -> bool: ...


class Audit(Protocol):
    """Records the caller's action on the audit log: its target (a job, run or version) and details.

    Called before the commit that the action's change goes out with."""

    def __call__(self, target: str, **detail: object) -> None: ...


def dispatch(
    session: Session,
    enqueue: Enqueue,
    job: Job,
    step: Step,
    arg: str,
    audit: Audit | None = None,
    **detail: object,
) -> bool:
    """Mark ``job`` dispatched, audit (target ``arg``, with ``detail``), commit, then send ``step(arg)``."""
    catalog.mark_dispatched(session, [job.id])
    if audit is not None:
        audit(arg, **detail)
    session.commit()
    return enqueue(step, arg)


def parse_step(revision: DocumentRevision | None) -> Step:
    """Where a revision is parsed: images, and documents a parse found to need OCR, on the ``ocr`` queue."""
    if revision is not None and (revision.kind in IMAGE_KINDS or revision.ocr_pages_total is not None):
        return Step.ocr
    return Step.parse


def dispatch_parses(session: Session, enqueue: Enqueue, job_id: str, revision_ids: Sequence[str]) -> bool:
    """Commit the ingest job as dispatched, then send one parse per revision; False if any was not sent."""
    steps = [(parse_step(session.get(DocumentRevision, revision_id)), revision_id) for revision_id in revision_ids]
    catalog.mark_dispatched(session, [job_id])
    session.commit()
    return all([enqueue(step, revision_id) for step, revision_id in steps])


def open_job(session: Session, job_id: str) -> tuple[Job, Collection] | None:
    """The job and its collection, or None when there is nothing (left) to do; marks the job running (committed)."""
    job = session.get(Job, job_id)
    if job is None or job.status in (JobStatus.succeeded, JobStatus.failed):
        return None
    collection = catalog.get_collection_by_id(session, job.collection_id or "")
    if collection is None:
        catalog.finish_job(session, job, error="the collection was deleted before this job ran")
        return None
    if job.status == JobStatus.queued:
        # Two deliveries of one message (a re-send crossing the original) must not both run it.
        if not catalog.claim_queued_job(session, job.id):
            session.rollback()
            return None
        session.refresh(job)
    else:  # taken over from a worker that died (the caller checked that it is not alive elsewhere)
        catalog.start_job(session, job)
    session.commit()
    return job, collection


def reason(exc: BaseException) -> str:
    """The human-readable error recorded on a revision or a version (a document's own fault, or internal)."""
    if isinstance(exc, DocumentParseError):
        return exc.detail
    return f"internal error: {type(exc).__name__}: {str(exc)[:500]}"
