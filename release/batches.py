"""Many small documents of one upload parsed as one unit of work (issue 21).

An upload of many short texts (abstracts, tickets, notes) spent more CPU on each document's
bookkeeping than on reading it: a message, a claim, several commits, the ingest job's counters
and the collection's pending count, once per document, around an embedding call of two or
three chunks. ``release.dispatch`` sends such documents in groups; here a group's revisions are
claimed in one statement, each is parsed on its own (one that cannot be parsed, or needs OCR,
is recorded as such and the others go on), all their chunks are embedded in one pass of the
model (batches across documents) and recorded in one commit, and the job's progress and the
collection's build are updated once.

Reliability is that of one document: the message is acknowledged after the work (acks late);
a killed worker's group is delivered again or re-sent by the reconciler and finds each
revision's state in the catalog. An error that is not a document's own (the catalog, the
model) is the caller's to handle (``workers.tasks`` retries it, or parses the group's documents
one at a time, so that it fails only the document it belongs to).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from core import catalog
from core.errors import DocumentParseError
from core.models import DocumentRevision, DocumentStatus, Job, JobStatus, utcnow
from ingest import pipeline
from ingest.ocr import OcrNeeded
from release.builds import request_build
from release.intake import ParseTools, claim_parse, hand_over_to_ocr

log = logging.getLogger(__name__)


def claim_parses(
    session: Session, revision_ids: Sequence[str], tools: ParseTools, duplicate: Callable[[Job | None], bool]
) -> list[DocumentRevision]:
    """The group's revisions to parse now, marked parsing (committed), as ``intake.claim_parse`` for each.

    The queued ones are claimed in one statement; the others (parsed already, parsing
    elsewhere, or left parsing by a dead worker) go through ``claim_parse`` one by one.
    """
    revisions = catalog.revisions_with_documents(session, revision_ids)
    alive = {c for c in {r.collection_id for r in revisions} if catalog.get_collection_by_id(session, c) is not None}
    revisions = [r for r in revisions if r.collection_id in alive]
    claimed_ids = catalog.claim_revisions(session, [r.id for r in revisions if r.status == DocumentStatus.queued])
    claimed = [r for r in revisions if r.id in claimed_ids]
    for revision in claimed:
        revision.status = DocumentStatus.parsing
    for job_id in {r.job_id for r in claimed if r.job_id}:
        job = session.get(Job, job_id)
        if job is not None:
            catalog.start_job(session, job)
    session.commit()
    for revision in revisions:
        if revision.id not in claimed_ids and (taken := claim_parse(session, revision.id, tools, duplicate)):
            claimed.append(taken)
    return claimed


def parse_many(session: Session, revisions: Sequence[DocumentRevision], tools: ParseTools) -> None:
    """Parse, chunk and embed claimed revisions into the caches; each is recorded ready, failed or sent to OCR.

    Raises (nothing recorded on the revisions) for an error that is not one document's own.
    """
    by_collection: dict[str, list[DocumentRevision]] = {}
    for revision in revisions:
        by_collection.setdefault(revision.collection_id, []).append(revision)
    for collection_id, members in by_collection.items():
        collection = catalog.get_collection_by_id(session, collection_id)
        if collection is None:
            continue
        config = catalog.collection_config(collection).ingestion
        outcomes = pipeline.prepare_revisions(
            session, tools.blobs, tools.embedder(config.embedding_model), collection, members, config, tools.parse
        )
        needs_ocr: list[tuple[DocumentRevision, int]] = []
        for revision in members:
            outcome = outcomes[revision.id]
            if isinstance(outcome, OcrNeeded):
                needs_ocr.append((revision, outcome.pages))
            elif isinstance(outcome, DocumentParseError):
                log.warning("document revision %s failed: %s", revision.id, outcome.detail)
                _record(revision, DocumentStatus.failed, error=outcome.detail)
            else:
                _record(revision, DocumentStatus.ready)
                revision.chunk_count, revision.embedded_count, revision.pii_counts = (
                    outcome.chunks,
                    outcome.embedded,
                    outcome.pii,
                )
        session.commit()
        ready = sum(isinstance(o, pipeline.Prepared) for o in outcomes.values())
        log.info(
            "parsed %d of %d documents together: %d chunks, %d embedded",
            ready,
            len(members),
            sum(o.chunks for o in outcomes.values() if isinstance(o, pipeline.Prepared)),
            sum(o.embedded for o in outcomes.values() if isinstance(o, pipeline.Prepared)),
            extra={"collection": collection.name},
        )
        for revision, pages in needs_ocr:
            hand_over_to_ocr(session, revision, pages, tools.enqueue)


def _record(revision: DocumentRevision, status: DocumentStatus, error: str | None = None) -> None:
    revision.status = status
    revision.error = error
    revision.parsed_at = utcnow()


def after_parses(session: Session, revision_ids: Sequence[str], tools: ParseTools) -> None:
    """``intake.after_parse`` for a group: count its parsed revisions into their jobs, request the builds
    of collections with nothing left to parse, then settle the jobs (each once)."""
    revisions = [
        r
        for r in catalog.revisions_with_documents(session, revision_ids)
        if r.status in (DocumentStatus.ready, DocumentStatus.failed)
    ]
    if not revisions:
        return  # handed over to the ocr queue: counted when they are parsed
    jobs: dict[str, Job] = {}
    for job_id, count in Counter(r.job_id for r in revisions if r.job_id).items():
        job = session.get(Job, job_id)
        if job is not None:
            jobs[job_id] = job
            if job.status not in (JobStatus.succeeded, JobStatus.failed):
                catalog.advance_job(session, job_id, count)
    open_jobs = [j for j in jobs.values() if j.status not in (JobStatus.succeeded, JobStatus.failed)]
    session.commit()
    for collection_id in {r.collection_id for r in revisions}:
        if catalog.pending_revision_count(session, collection_id) != 0:
            continue
        build_job_id = request_build(session, collection_id, tools.enqueue, tools.build_debounce_s)
        for job in jobs.values():
            if build_job_id and job.collection_id == collection_id:
                session.refresh(job)
                job.result = {**job.result, "build_job_id": build_job_id}
        session.commit()
    for job in open_jobs:
        session.refresh(job)
        catalog.settle_ingest_job(session, job)
    session.commit()
