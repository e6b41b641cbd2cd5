"""Documents and revisions repository: uploads, parse claims and the revisions a build reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from core.errors import DocumentNotFound
from core.models import Collection, Document, DocumentRevision, DocumentStatus, Job, utcnow


@dataclass(frozen=True)
class IncomingFile:
    filename: str
    sha256: str
    size: int
    kind: str
    content_type: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class UploadOutcome:
    document: Document
    revision: DocumentRevision
    changed: bool


def record_upload(
    session: Session, collection: Collection, files: Sequence[IncomingFile], job: Job
) -> list[UploadOutcome]:
    """Record each file as a new document revision unless it repeats the current one."""
    outcomes: list[UploadOutcome] = []
    for incoming in files:
        document = session.scalar(
            select(Document).where(Document.collection_id == collection.id, Document.filename == incoming.filename)
        )
        if document is None:
            document = Document(collection_id=collection.id, filename=incoming.filename)
            session.add(document)
            session.flush()
        current = session.get(DocumentRevision, document.current_revision_id) if document.current_revision_id else None
        if (
            current is not None
            and not document.deleted
            and current.sha256 == incoming.sha256
            and current.upload_metadata == incoming.metadata
        ):
            outcomes.append(UploadOutcome(document, current, changed=False))
            continue
        number = (
            session.scalar(select(func.max(DocumentRevision.number)).where(DocumentRevision.document_id == document.id))
            or 0
        ) + 1
        revision = DocumentRevision(
            document_id=document.id,
            collection_id=collection.id,
            number=number,
            sha256=incoming.sha256,
            size=incoming.size,
            kind=incoming.kind,
            content_type=incoming.content_type,
            upload_metadata=incoming.metadata,
            status=DocumentStatus.queued,
            job_id=job.id,
        )
        session.add(revision)
        session.flush()
        document.current_revision_id = revision.id
        document.deleted = False
        document.updated_at = utcnow()
        outcomes.append(UploadOutcome(document, revision, changed=True))
    return outcomes


def list_documents(session: Session, collection: Collection, offset: int, limit: int) -> tuple[Sequence[Document], int]:
    where = (Document.collection_id == collection.id, Document.deleted.is_(False))
    total = session.scalar(select(func.count()).select_from(Document).where(*where)) or 0
    items = session.scalars(select(Document).where(*where).order_by(Document.filename).offset(offset).limit(limit))
    return items.all(), total


def get_document(session: Session, collection: Collection, document_id: str) -> Document:
    document = session.get(Document, document_id)
    if document is None or document.collection_id != collection.id or document.deleted:
        raise DocumentNotFound(f"document {document_id!r} does not exist in collection {collection.name!r}")
    return document


def current_revision(session: Session, document: Document) -> DocumentRevision | None:
    if document.current_revision_id is None:
        return None
    return session.get(DocumentRevision, document.current_revision_id)


def mark_document_deleted(session: Session, document: Document) -> None:
    document.deleted = True
    document.updated_at = utcnow()


def pending_revision_count(session: Session, collection_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(DocumentRevision)
            .join(Document, Document.current_revision_id == DocumentRevision.id)
            .where(
                Document.collection_id == collection_id,
                Document.deleted.is_(False),
                DocumentRevision.status.in_([DocumentStatus.queued, DocumentStatus.parsing]),
            )
        )
        or 0
    )


def pending_bytes(session: Session, collection_id: str) -> int:
    """Bytes of uploaded revisions still waiting to be parsed."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(DocumentRevision.size), 0)).where(
                DocumentRevision.collection_id == collection_id,
                DocumentRevision.status.in_([DocumentStatus.queued, DocumentStatus.parsing]),
            )
        )
        or 0
    )


def revisions_of_job(session: Session, job_id: str) -> Sequence[DocumentRevision]:
    return session.scalars(select(DocumentRevision).where(DocumentRevision.job_id == job_id)).all()


def requeue_lost_revisions(session: Session, job_id: str) -> list[str]:
    """The ids of a lost ingest job's revisions still to parse; those left ``parsing`` go back to queued.

    Only for a job the reconciler found quiet (no heartbeat): no process parses its files, so
    a ``parsing`` revision lost its worker, and its new message must be able to claim it.
    """
    pending = [
        r for r in revisions_of_job(session, job_id) if r.status in (DocumentStatus.queued, DocumentStatus.parsing)
    ]
    for revision in pending:
        revision.status = DocumentStatus.queued
    return [r.id for r in pending]


def claim_revision(session: Session, revision_id: str) -> bool:
    """Mark a queued revision parsing; False if it is not queued (parsing already, or parsed).

    Two messages for one revision (a re-send while the original still waited) never parse
    it side by side: only the one that claims it starts.
    """
    claimed = session.execute(
        update(DocumentRevision)
        .where(DocumentRevision.id == revision_id, DocumentRevision.status == DocumentStatus.queued)
        .values(status=DocumentStatus.parsing)
    ).rowcount  # type: ignore[attr-defined]
    return bool(claimed)


def claim_revisions(session: Session, revision_ids: Sequence[str]) -> set[str]:
    """``claim_revision`` for many revisions in one statement: the ids this call marked parsing."""
    if not revision_ids:
        return set()
    claimed = session.execute(
        update(DocumentRevision)
        .where(DocumentRevision.id.in_(list(revision_ids)), DocumentRevision.status == DocumentStatus.queued)
        .values(status=DocumentStatus.parsing)
        .returning(DocumentRevision.id)
    )
    return set(claimed.scalars())


def revisions_with_documents(session: Session, revision_ids: Sequence[str]) -> list[DocumentRevision]:
    """The revisions (those that exist) with their documents loaded, in the order of ``revision_ids``."""
    found = {
        r.id: r
        for r in session.scalars(
            select(DocumentRevision)
            .where(DocumentRevision.id.in_(list(revision_ids)))
            .options(selectinload(DocumentRevision.document))
        )
    }
    return [found[i] for i in revision_ids if i in found]


def buildable_revisions(session: Session, collection_id: str) -> list[tuple[Document, DocumentRevision]]:
    """For every live document, its newest successfully parsed revision.

    A document whose newest upload failed to parse keeps serving its previous good
    revision, so a broken re-upload never removes knowledge from the next version.
    """
    rows = session.execute(
        select(Document, DocumentRevision)
        .join(DocumentRevision, DocumentRevision.document_id == Document.id)
        .where(
            Document.collection_id == collection_id,
            Document.deleted.is_(False),
            DocumentRevision.status == DocumentStatus.ready,
        )
        .order_by(Document.filename, DocumentRevision.number.desc())
    ).all()
    chosen: dict[str, tuple[Document, DocumentRevision]] = {}
    for document, revision in rows:
        chosen.setdefault(document.id, (document, revision))
    return list(chosen.values())


def failed_revisions_since(
    session: Session, collection_id: str, since: datetime
) -> Sequence[tuple[DocumentRevision, str]]:
    """The collection's revisions that failed to parse since ``since``, with their documents' filenames."""
    return (
        session.execute(
            select(DocumentRevision, Document.filename)
            .join(Document, Document.id == DocumentRevision.document_id)
            .where(
                DocumentRevision.collection_id == collection_id,
                DocumentRevision.status == DocumentStatus.failed,
                DocumentRevision.parsed_at >= since,
            )
        )
        .tuples()
        .all()
    )


def document_count(session: Session, collection_id: str) -> int:
    """The collection's documents that are not deleted."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.collection_id == collection_id, Document.deleted.is_(False))
        )
        or 0
    )


def revision_counts(session: Session) -> Sequence[tuple[str, int]]:
    """(status, how many) over every document revision."""
    return (
        session.execute(select(DocumentRevision.status, func.count()).group_by(DocumentRevision.status)).tuples().all()
    )


def filenames_of_revisions(session: Session, revision_ids: Sequence[str]) -> dict[str, str]:
    """Revision id -> its document's filename (chunk ids start with the revision id)."""
    if not revision_ids:
        return {}
    rows = session.execute(
        select(DocumentRevision.id, Document.filename)
        .join(Document, Document.id == DocumentRevision.document_id)
        .where(DocumentRevision.id.in_(set(revision_ids)))
    ).tuples()
    return dict(rows.all())


def ocr_page_progress(session: Session, job_id: str) -> tuple[int, int] | None:
    """Pages OCR has read and pages it has to read, over an ingest job's revisions; None when none needs OCR."""
    done, total = session.execute(
        select(func.sum(DocumentRevision.ocr_pages_done), func.sum(DocumentRevision.ocr_pages_total)).where(
            DocumentRevision.job_id == job_id, DocumentRevision.ocr_pages_total.is_not(None)
        )
    ).one()
    return None if total is None else (int(done or 0), int(total))
