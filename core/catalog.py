"""Catalog repositories: every read and state change of collections, documents, versions and jobs.

Functions take a ``Session`` and leave committing to the caller, except where a
compare-and-set needs its own flush. State moves that can race (the live pointer, the
one pending build per collection) are conditional UPDATEs, so they are atomic on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from core.config import CollectionConfig
from core.errors import (
    CollectionExists,
    CollectionNotFound,
    ConcurrentChange,
    DocumentNotFound,
    InvalidInput,
    JobNotFound,
    NotFound,
    VersionDropped,
    VersionNotFound,
    VersionNotReady,
)
from core.models import (
    Collection,
    Document,
    DocumentRevision,
    DocumentStatus,
    EvalRun,
    Feedback,
    GoldenItem,
    GoldenSet,
    Job,
    JobKind,
    JobStatus,
    PromptTemplate,
    QueryLog,
    Report,
    Version,
    VersionDocument,
    VersionState,
    new_id,
    utcnow,
)

T = TypeVar("T")
COLLECTION_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,46})[a-z0-9]$")


# ---------------------------------------------------------------- collections


def _add_numbered(
    session: Session, number: Any, owner: Any, owner_id: str, build: Callable[[int], T], commit: bool = False
) -> T:
    """Insert ``build(n)`` where n is one more than the highest ``number`` of ``owner_id``'s rows.

    A unique constraint on (owner, number) catches a concurrent insert of the same n;
    the insert is then retried with the next number.
    """
    for _ in range(5):
        row = build((session.scalar(select(func.max(number)).where(owner == owner_id)) or 0) + 1)
        session.add(row)
        try:
            session.commit() if commit else session.flush()
            return row
        except IntegrityError:
            session.rollback()
    raise ConcurrentChange("could not allocate the next number after concurrent inserts; retry")


def validate_collection_name(name: str) -> str:
    if not COLLECTION_NAME.match(name) or "--" in name:
        raise InvalidInput(
            f"invalid collection name {name!r}: use 3-48 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


def create_collection(
    session: Session, name: str, description: str, owners: list[str], config: CollectionConfig
) -> Collection:
    validate_collection_name(name)
    collection = Collection(name=name, description=description, owners=owners, config=config.model_dump())
    session.add(collection)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise CollectionExists(f"collection {name!r} already exists") from None
    return collection


def get_collection(session: Session, name: str) -> Collection:
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise CollectionNotFound(f"collection {name!r} does not exist")
    return collection


def get_collection_by_id(session: Session, collection_id: str) -> Collection | None:
    return session.get(Collection, collection_id)


def list_collections(
    session: Session, offset: int, limit: int, only: frozenset[str] | None = None
) -> tuple[Sequence[Collection], int]:
    """Collections by name; ``only`` restricts to the names a scoped key may see."""
    where = [] if only is None else [Collection.name.in_(sorted(only))]
    total = session.scalar(select(func.count()).select_from(Collection).where(*where)) or 0
    items = session.scalars(select(Collection).where(*where).order_by(Collection.name).offset(offset).limit(limit))
    return items.all(), total


def collection_config(collection: Collection) -> CollectionConfig:
    return CollectionConfig.model_validate(collection.config)


def delete_collection(session: Session, collection: Collection) -> list[str]:
    """Delete the collection's catalog rows; return the Chroma collections to drop (those of
    versions not dropped, and the dropped bases that delta versions still read)."""
    names = sorted(collections_in_use(session, collection.id))
    session.delete(collection)
    session.flush()
    return names


# ------------------------------------------------------------------ documents


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


# ----------------------------------------------------------------------- jobs


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


def revisions_of_job(session: Session, job_id: str) -> Sequence[DocumentRevision]:
    return session.scalars(select(DocumentRevision).where(DocumentRevision.job_id == job_id)).all()


def settle_ingest_job(session: Session, job: Job) -> bool:
    """Finish an ingest job once none of its revisions is still queued or parsing."""
    revisions = revisions_of_job(session, job.id)
    if any(r.status in (DocumentStatus.queued, DocumentStatus.parsing) for r in revisions):
        return False
    failures = [r for r in revisions if r.status == DocumentStatus.failed]
    error = None
    if failures:
        names = {
            d.id: d.filename
            for d in session.scalars(select(Document).where(Document.id.in_([r.document_id for r in failures])))
        }
        reasons = "; ".join(f"{names.get(r.document_id, r.document_id)}: {r.error}" for r in failures)
        error = f"{len(failures)} of {len(revisions)} documents failed: {reasons}"
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


# ------------------------------------------------------------------- versions


def list_versions(session: Session, collection: Collection, offset: int, limit: int) -> tuple[Sequence[Version], int]:
    where = Version.collection_id == collection.id
    total = session.scalar(select(func.count()).select_from(Version).where(where)) or 0
    items = session.scalars(select(Version).where(where).order_by(Version.number.desc()).offset(offset).limit(limit))
    return items.all(), total


def get_version(session: Session, collection: Collection, number: int) -> Version:
    version = session.scalar(select(Version).where(Version.collection_id == collection.id, Version.number == number))
    if version is None:
        raise VersionNotFound(f"version {number} of collection {collection.name!r} does not exist")
    return version


def collection_and_version(session: Session, name: str, number: int | None) -> tuple[Collection, Version | None]:
    """The collection and its version ``number`` (None: the live one), in one query.

    What a query needs: the version's list of changed files (tens of KiB of JSON for a
    large first version) is not loaded.
    """
    which = Version.id == Collection.live_version_id if number is None else Version.number == number
    row = session.execute(
        select(Collection, Version)
        .outerjoin(Version, and_(Version.collection_id == Collection.id, which))
        .where(Collection.name == name)
        .options(defer(Version.changes, raiseload=True))
    ).first()
    if row is None:
        raise CollectionNotFound(f"collection {name!r} does not exist")
    return row[0], row[1]


def _version_stamp_query(pinned: bool) -> Select[str, datetime, str, str, datetime | None]:
    which = Version.number == bindparam("number") if pinned else Version.id == Collection.live_version_id
    return (
        select(Collection.id, Collection.updated_at, Version.id, Version.state, Version.dropped_at)
        .outerjoin(Version, and_(Version.collection_id == Collection.id, which))
        .where(Collection.name == bindparam("name"))
    )


_VERSION_STAMP = {pinned: _version_stamp_query(pinned) for pinned in (False, True)}


def version_stamp(connection: Connection, name: str, number: int | None) -> tuple[Any, ...] | None:
    """A few columns that change whenever ``collection_and_version(name, number)`` would answer
    differently for a query: the collection's ``updated_at`` (its config, its live pointer) and
    the version's id, state and drop time. None if there is no such collection.

    Cheap (a Core select of five columns, no ORM objects): readers cache what they resolved
    and re-read it only when the stamp changes.
    """
    params: dict[str, Any] = {"name": name} if number is None else {"name": name, "number": number}
    row = connection.execute(_VERSION_STAMP[number is not None], params).first()
    return None if row is None else tuple(row)


def version_for_job(session: Session, job_id: str) -> Version | None:
    return session.scalar(select(Version).where(Version.job_id == job_id))


def latest_version(session: Session, collection_id: str, states: Sequence[str]) -> Version | None:
    return session.scalar(
        select(Version)
        .where(Version.collection_id == collection_id, Version.state.in_(states))
        .order_by(Version.number.desc())
        .limit(1)
    )


def delta_base(session: Session, version: Version) -> Version | None:
    """The newest full (non-delta) built version of ``version``'s collection with its vectors
    still stored, built with the same embedding model and ingestion settings: a delta's base."""
    return session.scalar(
        select(Version)
        .where(
            Version.collection_id == version.collection_id,
            Version.id != version.id,
            Version.state.in_([VersionState.ready, VersionState.live, VersionState.archived]),
            Version.base_collection.is_(None),
            Version.dropped_at.is_(None),
            Version.embedding_model == version.embedding_model,
        )
        .order_by(Version.number.desc())
        .limit(1)
    )


def live_embedding_models(session: Session) -> list[str]:
    """The embedding models that the collections' live versions were built with."""
    live = select(Version.embedding_model).join(Collection, Collection.live_version_id == Version.id)
    return sorted(set(session.scalars(live)))


def collections_in_use(session: Session, collection_id: str) -> set[str]:
    """Chroma collections that a version not dropped still reads: its own and its base's."""
    rows = session.execute(
        select(Version.chroma_collection, Version.base_collection).where(
            Version.collection_id == collection_id, Version.dropped_at.is_(None)
        )
    ).all()
    return {name for row in rows for name in row if name}


def dropped_bases(session: Session, collection_id: str) -> Sequence[Version]:
    """Dropped versions that some delta version names as its base (their vectors may be kept)."""
    bases = select(Version.base_collection).where(
        Version.collection_id == collection_id, Version.base_collection.is_not(None)
    )
    return session.scalars(
        select(Version).where(
            Version.collection_id == collection_id,
            Version.dropped_at.is_not(None),
            Version.chroma_collection.in_(bases),
        )
    ).all()


def version_documents(session: Session, version: Version) -> Sequence[VersionDocument]:
    return session.scalars(select(VersionDocument).where(VersionDocument.version_id == version.id)).all()


def create_version(session: Session, collection: Collection, job_id: str, chroma_name_for: Any) -> Version:
    """Allocate the next version number (unique per collection; retried on a race) and commit the row."""
    config = collection_config(collection)

    def build(number: int) -> Version:
        return Version(
            id=new_id(),
            collection_id=collection.id,
            number=number,
            state=VersionState.building,
            config=config.ingestion.model_dump(),
            embedding_model=config.ingestion.embedding_model,
            chroma_collection=chroma_name_for(collection.name, number),
            job_id=job_id,
        )

    return _add_numbered(session, Version.number, Version.collection_id, collection.id, build, commit=True)


def publish(session: Session, collection: Collection, version: Version) -> None:
    """Make ``version`` live; the current live version becomes archived. Atomic."""
    if version.dropped_at is not None:
        raise VersionDropped(f"version {version.number} was dropped and cannot be published")
    if version.state not in (VersionState.ready, VersionState.archived, VersionState.live):
        raise VersionNotReady(f"version {version.number} is {version.state}, not ready; it cannot be published")
    if version.state == VersionState.live:
        return
    _move_live_pointer(session, collection, version, replaced=collection.live_version_id)


def rollback(session: Session, collection: Collection) -> Version:
    """Make the version that was live before the current one live again. Atomic."""
    if collection.live_version_id is None:
        raise VersionNotReady(f"collection {collection.name!r} has no live version to roll back")
    current = session.get(Version, collection.live_version_id)
    target = session.get(Version, current.replaced_version_id) if current and current.replaced_version_id else None
    if current is None or target is None:
        raise VersionNotReady(f"collection {collection.name!r} has no earlier live version to roll back to")
    if target.dropped_at is not None:
        raise VersionDropped(f"version {target.number} was dropped; there is nothing to roll back to")
    _move_live_pointer(session, collection, target, replaced=target.replaced_version_id)
    return target


def _move_live_pointer(session: Session, collection: Collection, version: Version, replaced: str | None) -> None:
    previous = collection.live_version_id
    condition = Collection.live_version_id.is_(None) if previous is None else Collection.live_version_id == previous
    moved = session.execute(
        update(Collection).where(Collection.id == collection.id, condition).values(live_version_id=version.id)
    ).rowcount  # type: ignore[attr-defined]
    if not moved:
        session.rollback()
        raise ConcurrentChange(f"the live version of {collection.name!r} changed concurrently; retry")
    # UPDATE statements, not attribute changes: the ORM writes only what differs from what it
    # read, and a concurrent publish and rollback may have archived this version and made it
    # live again since (a burst left the pointer on a version marked archived, which retention
    # would then drop). Whatever else is marked live is archived: exactly one version is live.
    session.execute(
        update(Version)
        .where(Version.collection_id == collection.id, Version.state == VersionState.live, Version.id != version.id)
        .values(state=VersionState.archived)
    )
    session.execute(
        update(Version)
        .where(Version.id == version.id)
        .values(state=VersionState.live, replaced_version_id=replaced, published_at=utcnow())
    )
    session.flush()
    session.refresh(collection)
    session.refresh(version)


def versions_to_drop(session: Session, collection: Collection, keep: int) -> list[Version]:
    """Non-live versions beyond the newest ``keep``, plus failed ones, still holding a Chroma collection."""
    candidates = session.scalars(
        select(Version)
        .where(
            Version.collection_id == collection.id,
            Version.dropped_at.is_(None),
            Version.state.in_([VersionState.ready, VersionState.archived, VersionState.failed]),
        )
        .order_by(Version.number.desc())
    ).all()
    kept = [v for v in candidates if v.state != VersionState.failed][:keep]
    return [v for v in candidates if v not in kept]


# ------------------------------------------------------------------ query log


def prune_query_log(session: Session, older_than: timedelta) -> int:
    """Delete query log rows older than the retention period; return how many."""
    result = session.execute(delete(QueryLog).where(QueryLog.created_at < utcnow() - older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ------------------------------------------------------------ golden sets, evaluations


def create_golden_set(
    session: Session, collection: Collection, filename: str, source_format: str, items: Sequence[dict[str, Any]]
) -> GoldenSet:
    """Store a new golden-set revision (numbers are per collection; retried on a race)."""

    def build(revision: int) -> GoldenSet:
        golden = GoldenSet(
            collection_id=collection.id,
            revision=revision,
            filename=filename,
            source_format=source_format,
            item_count=len(items),
        )
        golden.items = [GoldenItem(position=i, **item) for i, item in enumerate(items)]
        return golden

    return _add_numbered(session, GoldenSet.revision, GoldenSet.collection_id, collection.id, build)


def list_golden_sets(session: Session, collection: Collection) -> Sequence[GoldenSet]:
    return session.scalars(
        select(GoldenSet).where(GoldenSet.collection_id == collection.id).order_by(GoldenSet.revision.desc())
    ).all()


def create_eval_run(
    session: Session, collection: Collection, version: Version, golden: GoldenSet, trigger: str, job: Job
) -> EvalRun:
    run = EvalRun(
        collection_id=collection.id,
        version_id=version.id,
        version_number=version.number,
        golden_set_id=golden.id,
        golden_revision=golden.revision,
        job_id=job.id,
        trigger=trigger,
    )
    session.add(run)
    session.flush()
    return run


def eval_run_missing(run_id: str) -> NotFound:
    """What an unknown evaluation id answers (also for one the caller may not see)."""
    return NotFound(f"evaluation {run_id!r} does not exist")


def eval_run_for_job(session: Session, job_id: str) -> EvalRun | None:
    return session.scalar(select(EvalRun).where(EvalRun.job_id == job_id))


def get_eval_run(session: Session, run_id: str) -> EvalRun:
    run = session.get(EvalRun, run_id)
    if run is None:
        raise eval_run_missing(run_id)
    return run


def list_eval_runs(
    session: Session, collection: Collection, offset: int = 0, limit: int = 100, version_number: int | None = None
) -> tuple[Sequence[EvalRun], int]:
    where = [EvalRun.collection_id == collection.id]
    if version_number is not None:
        where.append(EvalRun.version_number == version_number)
    total = session.scalar(select(func.count()).select_from(EvalRun).where(*where)) or 0
    items = session.scalars(
        select(EvalRun).where(*where).order_by(EvalRun.created_at.desc()).offset(offset).limit(limit)
    ).all()
    return items, total


def latest_eval_run(session: Session, version: Version, golden_set_id: str | None = None) -> EvalRun | None:
    query = select(EvalRun).where(EvalRun.version_id == version.id, EvalRun.status == JobStatus.succeeded)
    if golden_set_id is not None:
        query = query.where(EvalRun.golden_set_id == golden_set_id)
    return session.scalar(query.order_by(EvalRun.created_at.desc()).limit(1))


def list_reports(session: Session, collection: Collection, offset: int, limit: int) -> tuple[Sequence[Report], int]:
    where = Report.collection_id == collection.id
    total = session.scalar(select(func.count()).select_from(Report).where(where)) or 0
    items = session.scalars(select(Report).where(where).order_by(Report.created_at.desc()).offset(offset).limit(limit))
    return items.all(), total


def get_report(session: Session, collection: Collection, report_id: str) -> Report:
    report = session.get(Report, report_id)
    if report is None or report.collection_id != collection.id:
        raise NotFound(f"report {report_id!r} does not exist in collection {collection.name!r}")
    return report


# ------------------------------------------------------------------- feedback


def query_missing(query_id: str) -> NotFound:
    """What an unknown query id answers (also for one the caller may not see: the two read alike)."""
    return NotFound(f"query {query_id!r} does not exist (or its log was pruned)")


def get_query(session: Session, query_id: str) -> QueryLog:
    row = session.get(QueryLog, query_id.removeprefix("chatcmpl-"))
    if row is None:
        raise query_missing(query_id)
    return row


def add_feedback(
    session: Session, query: QueryLog, rating: str, comment: str, expected_answer: str | None, key_id: str | None
) -> Feedback:
    row = Feedback(
        query_id=query.id,
        collection_id=query.collection_id,
        rating=rating,
        comment=comment,
        expected_answer=expected_answer,
        key_id=key_id,
    )
    session.add(row)
    session.flush()
    return row


def list_feedback(
    session: Session, collection: Collection, rating: str | None, offset: int, limit: int
) -> tuple[Sequence[tuple[Feedback, QueryLog]], int]:
    where = [Feedback.collection_id == collection.id]
    if rating:
        where.append(Feedback.rating == rating)
    total = session.scalar(select(func.count()).select_from(Feedback).where(*where)) or 0
    rows = (
        session.execute(
            select(Feedback, QueryLog)
            .join(QueryLog, QueryLog.id == Feedback.query_id)
            .where(*where)
            .order_by(Feedback.created_at.desc())
            .offset(offset)
            .limit(limit)
        )
        .tuples()
        .all()
    )
    return rows, total


def feedback_with_queries(
    session: Session, collection: Collection, ids: Sequence[str]
) -> list[tuple[Feedback, QueryLog]]:
    rows = {
        feedback.id: (feedback, query)
        for feedback, query in session.execute(
            select(Feedback, QueryLog)
            .join(QueryLog, QueryLog.id == Feedback.query_id)
            .where(Feedback.collection_id == collection.id, Feedback.id.in_(list(ids)))
        ).tuples()
    }
    missing = [i for i in ids if i not in rows]
    if missing:
        raise NotFound(f"feedback {', '.join(missing)} does not exist in collection {collection.name!r}")
    return [rows[i] for i in ids]


# ------------------------------------------------------------- prompt templates


def create_prompt(
    session: Session, collection: Collection, template: str, note: str, created_by: str | None
) -> PromptTemplate:
    def build(revision: int) -> PromptTemplate:
        return PromptTemplate(
            collection_id=collection.id, revision=revision, template=template, note=note, created_by=created_by
        )

    return _add_numbered(session, PromptTemplate.revision, PromptTemplate.collection_id, collection.id, build)


def list_prompts(session: Session, collection: Collection) -> Sequence[PromptTemplate]:
    return session.scalars(
        select(PromptTemplate)
        .where(PromptTemplate.collection_id == collection.id)
        .order_by(PromptTemplate.revision.desc())
    ).all()


def get_prompt(session: Session, collection: Collection, revision: int) -> PromptTemplate:
    row = session.scalar(
        select(PromptTemplate).where(PromptTemplate.collection_id == collection.id, PromptTemplate.revision == revision)
    )
    if row is None:
        raise NotFound(f"prompt revision {revision} of collection {collection.name!r} does not exist")
    return row


def usage_rows(
    session: Session, collection: Collection, start: datetime, end: datetime
) -> Sequence[tuple[datetime, str | None, dict[str, Any], float]]:
    """(time, LLM model, usage, cost) of the collection's logged queries in [start, end]."""
    return (
        session.execute(
            select(QueryLog.created_at, QueryLog.model, QueryLog.usage, QueryLog.cost).where(
                QueryLog.collection_id == collection.id, QueryLog.created_at >= start, QueryLog.created_at <= end
            )
        )
        .tuples()
        .all()
    )
