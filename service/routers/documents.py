"""Documents: upload (new revisions), list, read, delete."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from core import catalog
from core.errors import FileTooLarge, InvalidInput, RagkeepError, TooManyRequests
from core.filetypes import FileKind, clean_filename, detect_file_kind
from core.models import JobKind
from service.access import GuardedRoute, ReadableCollection, WritableCollection, record
from service.deps import PrincipalDep, SessionDep, SettingsDep, StateDep
from service.schemas import (
    DocumentDeleted,
    DocumentRead,
    Offset,
    Page,
    UploadAccepted,
    UploadedDocument,
    error_responses,
)
from service.views import document_read

router = APIRouter(prefix="/collections/{name}/documents", tags=["documents"], route_class=GuardedRoute)
ERRORS = error_responses(404, 409, 413, 415, 422)
# Keys ragkeep itself sets on every chunk (and LlamaIndex's own); upload metadata may not shadow them.
RESERVED_METADATA = frozenset(
    {
        "filename",
        "pii",
        "page",
        "page_end",
        "section",
        "element_types",
        "parser",
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
    """The optional ``metadata`` form field: a flat JSON object stored on every chunk."""
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
        if not key or len(key) > 64:
            raise InvalidInput(f"metadata key {key!r} must be 1-64 characters")
        if key in RESERVED_METADATA:
            raise InvalidInput(f"metadata key {key!r} is reserved; ragkeep sets it itself")
        if not isinstance(item, (str, int, float, bool)) or (isinstance(item, str) and len(item) > 1000):
            raise InvalidInput(
                f"metadata value of {key!r} must be a string (at most 1000 characters), number or boolean"
            )
    return value


def _read_limited(upload: UploadFile, filename: str, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{filename!r} is larger than the {limit // (1024 * 1024)} MiB upload limit")
    return data


@router.post("", status_code=202, responses=ERRORS)
def upload_documents(
    collection: WritableCollection,
    session: SessionDep,
    state: StateDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more files (repeat the field).")],
    metadata: Annotated[str | None, Form(description="JSON object stored on every chunk of these files.")] = None,
) -> UploadAccepted:
    """Upload files; each new or changed file becomes a document revision that is parsed asynchronously.

    The whole request is checked before anything is stored: one oversized, empty or
    unsupported file rejects the request and nothing else changes.
    """
    name = collection.name
    extra = parse_metadata(metadata)
    if len(files) > settings.max_files_per_request:
        raise InvalidInput(f"at most {settings.max_files_per_request} files per request")
    checked: list[tuple[str, bytes, FileKind]] = []
    seen: set[str] = set()
    for upload in files:
        filename = clean_filename(upload.filename)
        if filename in seen:
            raise InvalidInput(f"{filename!r} appears twice in this upload")
        seen.add(filename)
        data = _read_limited(upload, filename, settings.max_upload_bytes)
        try:
            kind = detect_file_kind(data, filename, settings.limits.max_unpacked_mb * 1024 * 1024)
        except RagkeepError as exc:
            exc.detail = f"{exc.detail} (nothing from this upload was stored)"
            raise
        checked.append((filename, data, kind))

    pending = catalog.pending_bytes(session, collection.id)
    limit = settings.limits.max_pending_mb_per_collection * 1024 * 1024
    if pending + sum(len(data) for _, data, _ in checked) > limit:
        raise TooManyRequests(
            f"collection {name!r} already has {pending // (1024 * 1024)} MiB waiting to be parsed; the limit is "
            f"{settings.limits.max_pending_mb_per_collection} MiB. Retry when the current uploads are done.",
            30,
        )
    incoming = [
        catalog.IncomingFile(
            filename, state.blobs.put(collection.id, data), len(data), kind.kind, kind.content_type, extra
        )
        for filename, data, kind in checked
    ]
    job = catalog.create_job(session, JobKind.ingest, collection.id)
    outcomes = catalog.record_upload(session, collection, incoming, job)
    changed = [o.revision.id for o in outcomes if o.changed]
    job.progress_total = len(changed)
    if not changed:
        catalog.finish_job(session, job, result={"detail": "every file repeats its current revision"})
    record(
        request,
        session,
        principal,
        "documents.upload",
        name,
        job.id,
        files=[{"filename": o.document.filename, "sha256": o.revision.sha256, "changed": o.changed} for o in outcomes],
    )
    session.commit()
    if changed:
        state.tasks.parse_revisions(session, job.id, changed)
    return UploadAccepted(
        job_id=job.id,
        documents=[
            UploadedDocument(
                id=o.document.id,
                filename=o.document.filename,
                sha256=o.revision.sha256,
                revision=o.revision.number,
                status=o.revision.status,
                changed=o.changed,
            )
            for o in outcomes
        ],
    )


@router.get("", responses=ERRORS)
def list_documents(
    collection: ReadableCollection,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DocumentRead]:
    """List the collection's documents with their current status."""
    items, total = catalog.list_documents(session, collection, offset, limit)
    return Page[DocumentRead](items=[document_read(session, d) for d in items], total=total)


@router.get("/{document_id}", responses=ERRORS)
def get_document(collection: ReadableCollection, document_id: str, session: SessionDep) -> DocumentRead:
    """Read one document with its revision history."""
    return document_read(session, catalog.get_document(session, collection, document_id), with_revisions=True)


@router.delete("/{document_id}", status_code=202, responses=ERRORS)
def delete_document(
    collection: WritableCollection,
    document_id: str,
    session: SessionDep,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
) -> DocumentDeleted:
    """Remove a document; the next version (built automatically) no longer contains it."""
    document = catalog.get_document(session, collection, document_id)
    catalog.mark_document_deleted(session, document)
    record(request, session, principal, "documents.delete", collection.name, document.id, filename=document.filename)
    session.commit()
    build_job_id = state.tasks.request_build(session, collection.id, state.settings.worker.build_debounce_s)
    return DocumentDeleted(id=document.id, filename=document.filename, build_job_id=build_job_id)
