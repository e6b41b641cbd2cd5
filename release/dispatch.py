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
    parse_group = "parse_group"  # argument: the ids of several small revisions of one job (``release.batches``)
    ocr = "ocr"  # argument: a document revision id that needs OCR (parsed on the ``ocr`` queue)
    build = "build"  # argument: a build job id
    evaluate = "evaluate"  # argument: an evaluation run id
    report = "report"  # argument: a report job id


class Enqueue(Protocol):
    """Send one step's message; False when the broker could not take it (the reconciler retries)."""

    def __call__(self, step: Step, arg: str | list[str], countdown: float | None = None) -> bool: ...


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


# Small text documents are parsed in groups (issue 21): their bookkeeping (a message, claims, commits,
# the job's counters), not their parsing, was most of their CPU besides the model. A group stays
# small, so that the worker processes share an upload's documents and a group takes seconds.
GROUP_KINDS = frozenset({"txt", "md", "html", "csv", "tsv", "json", "xml"})
GROUP_MAX_FILE_BYTES = 32 * 1024
GROUP_MAX_DOCUMENTS = 16
GROUP_MAX_BYTES = 128 * 1024


def _groupable(step: Step, revision: DocumentRevision | None) -> bool:
    return (
        step == Step.parse
        and revision is not None
        and revision.kind in GROUP_KINDS
        and revision.size <= GROUP_MAX_FILE_BYTES
    )


def parse_messages(session: Session, revision_ids: Sequence[str]) -> list[tuple[Step, str | list[str]]]:
    """The messages that parse ``revision_ids``: small text documents in groups, the others one each."""
    messages: list[tuple[Step, str | list[str]]] = []
    group: list[str] = []
    size = 0

    def close() -> None:
        if len(group) > 1:
            messages.append((Step.parse_group, list(group)))
        elif group:
            messages.append((Step.parse, group[0]))
        group.clear()

    for revision_id in revision_ids:
        revision = session.get(DocumentRevision, revision_id)
        step = parse_step(revision)
        if revision is None or not _groupable(step, revision):
            messages.append((step, revision_id))
            continue
        if len(group) >= GROUP_MAX_DOCUMENTS or size + revision.size > GROUP_MAX_BYTES:
            close()
            size = 0
        group.append(revision_id)
        size += revision.size
    close()
    return messages


def dispatch_parses(session: Session, enqueue: Enqueue, job_id: str, revision_ids: Sequence[str]) -> bool:
    """Commit the ingest job as dispatched, then send its parses (``parse_messages``); False if any was not sent."""
    messages = parse_messages(session, revision_ids)
    catalog.mark_dispatched(session, [job_id])
    session.commit()
    return all([enqueue(step, arg) for step, arg in messages])


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
