"""Documents: upload (new revisions), list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from core import catalog
from release import intake
from service.access import GuardedRoute, ReadableCollection, WritableCollection
from service.deps import PrincipalDep, SessionDep, SettingsDep, StateDep
from service.mappers import document_read, upload_accepted
from service.routers.audit import auditor
from service.schemas import (
    DocumentDeleted,
    DocumentRead,
    Offset,
    Page,
    UploadAccepted,
    error_responses,
)

router = APIRouter(prefix="/collections/{name}/documents", tags=["documents"], route_class=GuardedRoute)
ERRORS = error_responses(404, 409, 413, 415, 422)


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
    password: Annotated[
        str | None,
        Form(
            description="Opens the password-protected files of this upload (PDF, DOCX/XLSX/PPTX, DOC/XLS/PPT, the "
            "members of an encrypted .zip (ZipCrypto or AES), also inside a .zip or attached to an email): one "
            "password for all of them; files it does not open are refused (422 `WrongPassword`). Without it a "
            "protected file is refused (422 `PasswordRequired`). "
            "The decrypted file is stored; the password is never stored or logged.",
            max_length=1024,  # ingest.decrypt.MAX_PASSWORD_CHARS
            json_schema_extra={"format": "password", "writeOnly": True},
        ),
    ] = None,
) -> UploadAccepted:
    """Upload files; each new or changed file becomes a document revision that is parsed asynchronously.

    The whole request is checked before anything is stored: one oversized, empty or
    unsupported file rejects the request and nothing else changes. A .zip becomes one
    document per member and an email one more per attachment; a member or attachment that
    fails the same checks is listed in `refused` with its reason, and the rest go ahead.
    A password-protected file needs the `password` field (422 `PasswordRequired` without it).
    """
    uploaded = intake.upload(
        session,
        collection,
        [intake.UploadedFile(f.filename, f.file) for f in files],
        metadata,
        settings=settings,
        blobs=state.blobs,
        enqueue=state.tasks.enqueue,
        audit=auditor(request, session, principal, "documents.upload", collection.name),
        password=password,
    )
    return upload_accepted(uploaded)


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
    audit = auditor(request, session, principal, "documents.delete", collection.name)
    debounce = state.settings.worker.build_debounce_s
    doc_id, filename, build_job_id = intake.delete_document(
        session, collection, document_id, state.tasks.enqueue, debounce, audit
    )
    return DocumentDeleted(id=doc_id, filename=filename, build_job_id=build_job_id)
