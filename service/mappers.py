"""Catalog rows -> API schemas: the mappers for the responses whose fields are not the rows' own.

Where a schema's fields are a row's attributes, routes use ``Schema.model_validate(row, from_attributes=True)``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import catalog
from core.models import Collection, Document, EvalRun, Job, JobKind, Version
from eval.unmeasured import judge_label
from release.intake import Upload
from service.schemas import (
    CollectionRead,
    DocumentRead,
    EvalResultRead,
    EvaluationRead,
    InjectionFindings,
    JobRead,
    Progress,
    RefusedFile,
    RevisionRead,
    UploadAccepted,
    UploadedDocument,
    VersionChanges,
    VersionRead,
)


def collection_read(session: Session, collection: Collection) -> CollectionRead:
    live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
    count = catalog.document_count(session, collection.id)
    return CollectionRead(
        name=collection.name,
        description=collection.description,
        owners=collection.owners,
        config=catalog.collection_config(collection),
        live_version=live.number if live else None,
        document_count=count,
        created_at=collection.created_at,
        updated_at=collection.updated_at,
    )


def upload_accepted(uploaded: Upload) -> UploadAccepted:
    return UploadAccepted(
        job_id=uploaded.job.id,
        documents=[
            UploadedDocument(
                id=o.document.id,
                filename=o.document.filename,
                sha256=o.revision.sha256,
                revision=o.revision.number,
                status=o.revision.status,
                changed=o.changed,
            )
            for o in uploaded.outcomes
        ],
        refused=[RefusedFile(filename=r.filename, reason=r.reason) for r in uploaded.refused],
    )


def document_read(session: Session, document: Document, with_revisions: bool = False) -> DocumentRead:
    current = catalog.current_revision(session, document)
    revisions = (
        [
            RevisionRead(
                number=r.number,
                sha256=r.sha256,
                size=r.size,
                kind=r.kind,
                status=r.status,
                error=r.error,
                chunk_count=r.chunk_count,
                pii=r.pii_counts or {},
                injection=InjectionFindings.model_validate(r.injection_counts or {}),
                metadata=r.upload_metadata,
                created_at=r.created_at,
                parsed_at=r.parsed_at,
            )
            for r in document.revisions
        ]
        if with_revisions
        else []
    )
    return DocumentRead(
        id=document.id,
        filename=document.filename,
        status=current.status if current else "queued",
        error=current.error if current else None,
        sha256=current.sha256 if current else None,
        revision=current.number if current else None,
        chunk_count=current.chunk_count if current else None,
        created_at=document.created_at,
        updated_at=document.updated_at,
        revisions=revisions,
    )


def job_read(session: Session, job: Job) -> JobRead:
    pages = catalog.ocr_page_progress(session, job.id) if job.kind == JobKind.ingest else None
    collection = session.get(Collection, job.collection_id) if job.collection_id else None
    return JobRead(
        id=job.id,
        kind=job.kind,
        collection=collection.name if collection else None,
        status=job.status,
        progress=Progress(done=job.progress_done, total=job.progress_total),
        ocr_pages=Progress(done=pages[0], total=pages[1]) if pages else None,
        error=job.error,
        result=job.result,
        trigger=job.trigger,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
    )


def version_read(version: Version) -> VersionRead:
    return VersionRead(
        number=version.number,
        state=version.state,
        document_count=version.document_count,
        chunk_count=version.chunk_count,
        embedded_chunk_count=version.embedded_chunk_count,
        reused_chunk_count=version.reused_chunk_count,
        embedding_model=version.embedding_model,
        ingestion_config=version.config,
        changes=VersionChanges.model_validate(version.changes or {}),
        error=version.error,
        build_seconds=version.build_seconds,
        chroma_collection=None if version.dropped_at else version.chroma_collection,
        base_version=version.base_version_number,
        created_at=version.created_at,
        built_at=version.built_at,
        published_at=version.published_at,
        dropped_at=version.dropped_at,
        job_id=version.job_id,
        gate=version.gate or {},
    )


def evaluation_read(session: Session, run: EvalRun, with_results: bool = False) -> EvaluationRead:
    collection = session.get(Collection, run.collection_id)
    results = None
    if with_results:
        rows = catalog.eval_results(session, run.id)  # in the golden set's order
        results = [EvalResultRead.model_validate(row, from_attributes=True) for row in rows]
    return EvaluationRead(
        id=run.id,
        collection=collection.name if collection else "",
        version=run.version_number,
        golden_set_revision=run.golden_revision,
        trigger=run.trigger,
        status=run.status,
        metrics=run.metrics,
        answer_mode=run.answer_mode,
        prompt_revision=run.prompt_revision,
        judge_model=run.judge_model,
        judge_host=run.judge_host,
        judge=judge_label(run.judge_model, run.judge_host),
        calibration=run.calibration,
        judge_calls=run.judge_calls,
        judge_retries=run.judge_retries,
        warnings=run.warnings,
        error=run.error,
        job_id=run.job_id,
        created_at=run.created_at,
        finished_at=run.finished_at,
        results=results,
    )
