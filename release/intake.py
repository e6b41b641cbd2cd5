"""Intake: an upload becomes document revisions and an ingest job; each revision is parsed into the caches.

``upload`` is the one entry for new bytes (the API's upload route, the CLI through it, the
web console): the whole upload is checked before anything is stored. Once a collection has
nothing left to parse, its next build is requested (``release.builds.request_build``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy.orm import Session

from core import catalog
from core.blobs import BlobStore
from core.embedding import Embedder
from core.errors import FileTooLarge, InvalidInput, RagkeepError, TooManyRequests
from core.filetypes import clean_filename
from core.models import Collection, DocumentRevision, DocumentStatus, Job, JobKind, JobStatus, utcnow
from core.settings import Settings
from ingest import pipeline
from ingest.decrypt import Unlocker
from ingest.ocr import OcrNeeded, OcrOptions, PageProgress
from ingest.sandbox import Parser
from ingest.unpack import AcceptedFile, RefusedFile, UnpackLimits, check_file, unpack
from release.builds import request_build
from release.dispatch import Audit, Enqueue, Step, dispatch_parses

log = logging.getLogger(__name__)

# Keys ragkeep itself sets on every chunk (and LlamaIndex's own); upload metadata may not shadow them.
RESERVED_METADATA = frozenset(
    {
        "filename",
        "pii",
        "parent",
        "page",
        "page_end",
        "section",
        "element_types",
        "parser",
        "ocr",
        "ocr_confidence",
        "document_title",
        "section_path",
        "injection",
        "injection_scan",
        "languages",
        "document_id",
        "revision",
        "sha256",
        "position",
        "doc_id",
        "ref_doc_id",
        "_node_content",
        "_node_type",
    }
)
# 50 keys of 64 characters with values of 1,000, with room for JSON escapes.
MAX_METADATA_CHARS = 128 * 1024


def parse_metadata(raw: str | None) -> dict[str, str | int | float | bool]:
    """The optional ``metadata`` of an upload: a flat JSON object stored on every chunk."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise InvalidInput(f"metadata may be at most {MAX_METADATA_CHARS} characters of JSON")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:  # "[[[[…": the parser's stack runs out before the flat-object check
        raise InvalidInput("metadata nests too deeply; it must be a flat JSON object") from None
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    if len(value) > 50:
        raise InvalidInput("metadata may have at most 50 keys")
    for key, item in value.items():
        _check_metadata_item(key, item)
    return value


def _check_metadata_item(key: str, item: object) -> None:
    if not key or len(key) > 64:
        raise InvalidInput(f"metadata key {key!r} must be 1-64 characters")
    if key in RESERVED_METADATA:
        raise InvalidInput(f"metadata key {key!r} is reserved; ragkeep sets it itself")
    if not isinstance(item, (str, int, float, bool)) or (isinstance(item, str) and len(item) > 1000):
        raise InvalidInput(f"metadata value of {key!r} must be a string (at most 1000 characters), number or boolean")


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload as the caller received it: its given name and a stream of its bytes."""

    filename: str | None
    stream: BinaryIO


@dataclass(frozen=True)
class Upload:
    job: Job
    outcomes: list[catalog.UploadOutcome]
    refused: list[RefusedFile]  # members of archives and attachments of emails that were not taken, and why


def _read_limited(upload: UploadedFile, filename: str, limit: int) -> bytes:
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{filename!r} is larger than the {limit // (1024 * 1024)} MiB upload limit")
    return data


def check_files(
    files: Sequence[UploadedFile], settings: Settings, password: str | None = None
) -> tuple[list[AcceptedFile], list[RefusedFile]]:
    """Every file read (within the size limit), named, typed, opened and unpacked; one bad file rejects them all.

    An uploaded file that fails its checks rejects the request; a member of an uploaded ZIP or
    an attachment of an uploaded email that fails them is refused alone (``ingest.unpack``).
    Password-protected files are opened with ``password`` (one for the whole upload) and kept
    decrypted; without it, or when it does not open them, they fail their checks (422).
    """
    if len(files) > settings.max_files_per_request:
        raise InvalidInput(f"at most {settings.max_files_per_request} files per request")
    limits = UnpackLimits(
        settings.max_files_per_request, settings.max_upload_bytes, settings.limits.max_unpacked_mb * 1024 * 1024
    )
    unlock = Unlocker(password, settings.limits.decrypt_timeout_s, settings.limits.max_parse_memory_mb)
    accepted: list[AcceptedFile] = []
    refused: list[RefusedFile] = []
    for upload in files:
        filename = clean_filename(upload.filename)
        data = _read_limited(upload, filename, settings.max_upload_bytes)
        try:
            unpacked = unpack(filename, data, check_file(data, filename, limits), limits, unlock)
        except RagkeepError as exc:
            exc.detail = f"{exc.detail} (nothing from this upload was stored)"
            raise
        accepted += unpacked.files
        refused += unpacked.refused
    _check_names(accepted, settings.max_files_per_request)
    return accepted, refused


def _check_names(accepted: Sequence[AcceptedFile], max_files: int) -> None:
    seen: set[str] = set()
    for item in accepted:
        if item.filename in seen:
            raise InvalidInput(f"{item.filename!r} appears twice in this upload (nothing from this upload was stored)")
        seen.add(item.filename)
    if len(accepted) > max_files:
        raise InvalidInput(
            f"this upload unpacks to {len(accepted)} documents; at most {max_files} per request "
            "(RAGKEEP_MAX_FILES_PER_REQUEST; nothing from this upload was stored)"
        )


def check_quota(session: Session, collection: Collection, incoming_bytes: int, settings: Settings) -> None:
    """Refuse (429) an upload that would put more than the limit waiting to be parsed."""
    pending = catalog.pending_bytes(session, collection.id)
    limit_mb = settings.limits.max_pending_mb_per_collection
    if pending + incoming_bytes > limit_mb * 1024 * 1024:
        raise TooManyRequests(
            f"collection {collection.name!r} already has {pending // (1024 * 1024)} MiB waiting to be parsed; the "
            f"limit is {limit_mb} MiB. Retry when the current uploads are done.",
            30,
        )


def upload(
    session: Session,
    collection: Collection,
    files: Sequence[UploadedFile],
    metadata: str | None,
    *,
    settings: Settings,
    blobs: BlobStore,
    enqueue: Enqueue,
    audit: Audit,
    password: str | None = None,
) -> Upload:
    """Check the whole upload, store the bytes, record new revisions and send their parses.

    Each new or changed file becomes a document revision; a file that repeats its current
    revision changes nothing. Committed here; the ingest job's id tracks the parsing.
    ``password`` opens the upload's password-protected files: their decrypted bytes are
    stored; the password itself goes nowhere (not the job, the catalog, the audit log or a log).
    """
    extra = parse_metadata(metadata)
    checked, refused = check_files(files, settings, password)
    check_quota(session, collection, sum(len(f.data) for f in checked), settings)
    incoming = [
        catalog.IncomingFile(
            f.filename,
            blobs.put(collection.id, f.data),
            len(f.data),
            f.kind.kind,
            f.kind.content_type,
            {**extra, "parent": f.parent} if f.parent else extra,
        )
        for f in checked
    ]
    job = catalog.create_job(session, JobKind.ingest, collection.id)
    if refused:  # recorded with the job: the upload's answer is not the only place they are told
        job.result = {"refused": [{"filename": r.filename, "reason": r.reason} for r in refused]}
    outcomes = catalog.record_upload(session, collection, incoming, job)
    changed = [o.revision.id for o in outcomes if o.changed]
    job.progress_total = len(changed)
    if not changed:
        catalog.finish_job(session, job, result={"detail": "every file repeats its current revision"})
    audit(
        job.id,
        files=[{"filename": o.document.filename, "sha256": o.revision.sha256, "changed": o.changed} for o in outcomes],
    )
    session.commit()
    if changed:
        dispatch_parses(session, enqueue, job.id, changed)
    return Upload(job, outcomes, refused)


def delete_document(
    session: Session, collection: Collection, document_id: str, enqueue: Enqueue, debounce_s: float, audit: Audit
) -> tuple[str, str, str | None]:
    """Remove a document; the next version (built automatically) no longer contains it.

    Returns the document's id, its filename and the build job that will drop it.
    """
    document = catalog.get_document(session, collection, document_id)
    catalog.mark_document_deleted(session, document)
    audit(document.id, filename=document.filename)
    session.commit()
    return document.id, document.filename, request_build(session, collection.id, enqueue, debounce_s)


# -------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParseTools:
    blobs: BlobStore
    embedder: Callable[[str], Embedder]
    parse: Parser
    enqueue: Enqueue
    build_debounce_s: float
    # Set where this process reads by OCR (the ``ocr`` queue's workers); None: a document that
    # needs OCR is handed over to that queue.
    ocr: OcrOptions | None = None


def claim_parse(
    session: Session, revision_id: str, tools: ParseTools, duplicate: Callable[[Job | None], bool]
) -> DocumentRevision | None:
    """The revision to parse now, marked parsing; None when there is nothing to do here.

    Nothing to do: the revision or its collection is gone; it was parsed already (a
    redelivery: its outcome is counted again, idempotently); or another live process is
    parsing it (``duplicate`` says whether this message is a duplicate of a running job).
    """
    revision = session.get(DocumentRevision, revision_id)
    if revision is None:
        log.info("revision %s no longer exists (collection deleted?)", revision_id)
        return None
    if catalog.get_collection_by_id(session, revision.collection_id) is None:
        return None
    if revision.status in (DocumentStatus.ready, DocumentStatus.failed):
        after_parse(session, revision.id, tools)  # redelivery after the result was recorded
        return None
    job = session.get(Job, revision.job_id) if revision.job_id else None
    # Parsing already, by a process of a job that is alive: this message is a duplicate (the
    # reconciler re-sent it while the original waited); else a dead worker's: take it over.
    if not catalog.claim_revision(session, revision.id) and duplicate(job):
        session.rollback()
        return None
    session.refresh(revision)
    if revision.status in (DocumentStatus.ready, DocumentStatus.failed):  # parsed meanwhile
        after_parse(session, revision.id, tools)
        return None
    revision.status = DocumentStatus.parsing
    if job is not None:
        catalog.start_job(session, job)
    session.commit()
    return revision


def _page_progress(session: Session, revision: DocumentRevision) -> PageProgress:
    """Record each page OCR has read on the revision (its job's page progress sums them)."""

    def record(done: int, total: int) -> None:
        revision.ocr_pages_done, revision.ocr_pages_total = done, total
        session.commit()

    return record


def hand_over_to_ocr(session: Session, revision: DocumentRevision, pages: int, enqueue: Enqueue) -> None:
    """A parse found that the revision needs OCR: queue it again, for the ``ocr`` queue (committed, then sent).

    ``ocr_pages_total`` marks it as an OCR document, so a re-dispatch (the reconciler) sends it there too.
    """
    revision.status = DocumentStatus.queued
    revision.ocr_pages_done, revision.ocr_pages_total = 0, pages
    session.commit()
    log.info("revision %s needs OCR (%d pages): sent to the ocr queue", revision.id, pages)
    enqueue(Step.ocr, revision.id)


def parse(session: Session, revision: DocumentRevision, tools: ParseTools) -> None:
    """Parse, chunk and embed a claimed revision into the caches; record it ready (raises on failure).

    Without ``tools.ocr``, a document that needs OCR is handed over to the ``ocr`` queue instead.
    """
    collection = catalog.get_collection_by_id(session, revision.collection_id)
    if collection is None:
        return
    config = catalog.collection_config(collection).ingestion
    parser: Parser = tools.parse
    if tools.ocr is not None:
        parser = functools.partial(tools.parse, ocr=tools.ocr, on_page=_page_progress(session, revision))
    try:
        chunks, embedded, found = pipeline.prepare_revision(
            session, tools.blobs, tools.embedder(config.embedding_model), collection, revision, config, parser
        )
    except OcrNeeded as needed:
        if tools.ocr is not None:
            raise
        session.rollback()
        hand_over_to_ocr(session, revision, needed.pages, tools.enqueue)
        return
    revision.status = DocumentStatus.ready
    revision.chunk_count = chunks
    revision.embedded_count = embedded
    revision.pii_counts = found
    revision.error = None
    revision.parsed_at = utcnow()
    session.commit()
    log.info(
        "parsed %s revision %d: %d chunks, %d embedded",
        revision.document_id,
        revision.number,
        chunks,
        embedded,
        extra={"collection": collection.name, "document_id": revision.document_id},
    )


def fail_revision(session: Session, revision_id: str, reason: str) -> None:
    revision = session.get(DocumentRevision, revision_id)
    if revision is None:
        return
    revision.status = DocumentStatus.failed
    revision.error = reason
    revision.parsed_at = utcnow()
    session.commit()


def after_parse(session: Session, revision_id: str, tools: ParseTools) -> None:
    """Count the revision into its job; once the collection has nothing left to parse, request a build.

    The build job's id is written onto the ingest job before that job is settled, so a client
    that sees the ingest job finished also sees which build will include its documents.
    """
    revision = session.get(DocumentRevision, revision_id)
    if revision is None or revision.status not in (DocumentStatus.ready, DocumentStatus.failed):
        return  # not parsed (handed over to the ocr queue): counted when it is
    job = session.get(Job, revision.job_id) if revision.job_id else None
    open_job = job is not None and job.status not in (JobStatus.succeeded, JobStatus.failed)
    if job is not None and open_job:
        catalog.advance_job(session, job.id)
        session.commit()
    if catalog.pending_revision_count(session, revision.collection_id) == 0:
        build_job_id = request_build(session, revision.collection_id, tools.enqueue, tools.build_debounce_s)
        if job is not None and build_job_id:
            session.refresh(job)
            job.result = {**job.result, "build_job_id": build_job_id}
            session.commit()
    if job is not None and open_job:
        session.refresh(job)
        catalog.settle_ingest_job(session, job)
        session.commit()
