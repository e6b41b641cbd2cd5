"""Versions repository: lookup, delta bases, Chroma collections in use, publish, roll back and retention.

The live pointer moves by conditional UPDATEs, so publish and rollback are atomic on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session, defer

from core.catalog._numbering import add_numbered
from core.config import CollectionConfig
from core.errors import CollectionNotFound, ConcurrentChange, VersionDropped, VersionNotFound, VersionNotReady
from core.models import Collection, Version, VersionDocument, VersionState, new_id, utcnow


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


def _version_stamp_query(pinned: bool) -> Select[str, datetime, str, str, datetime | None, float | None]:
    which = Version.number == bindparam("number") if pinned else Version.id == Collection.live_version_id
    return (
        select(
            Collection.id,
            Collection.updated_at,
            Version.id,
            Version.state,
            Version.dropped_at,
            Version.calibrated_threshold,
        )
        .outerjoin(Version, and_(Version.collection_id == Collection.id, which))
        .where(Collection.name == bindparam("name"))
    )


_VERSION_STAMP = {pinned: _version_stamp_query(pinned) for pinned in (False, True)}


def version_stamp(connection: Connection, name: str, number: int | None) -> tuple[Any, ...] | None:
    """A few columns that change whenever ``collection_and_version(name, number)`` would answer
    differently for a query: the collection's ``updated_at`` (its config, its live pointer) and
    the version's id, state, drop time and calibrated abstention threshold (an evaluation sets
    it). None if there is no such collection.

    Cheap (a Core select of six columns, no ORM objects): readers cache what they resolved
    and re-read it only when the stamp changes.
    """
    params: dict[str, Any] = {"name": name} if number is None else {"name": name, "number": number}
    row = connection.execute(_VERSION_STAMP[number is not None], params).first()
    return None if row is None else tuple(row)


def set_calibrated_threshold(session: Session, version_id: str, threshold: float | None) -> None:
    """Store the abstention threshold calibrated on the version's golden set (None: none supported)."""
    session.execute(update(Version).where(Version.id == version_id).values(calibrated_threshold=threshold))


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
    config = CollectionConfig.model_validate(collection.config)

    def build(number: int) -> Version:
        return Version(
            id=new_id(),
            collection_id=collection.id,
            number=number,
            state=VersionState.building,
            config=config.ingestion.model_dump(mode="json"),
            embedding_model=config.ingestion.embedding_model,
            chroma_collection=chroma_name_for(collection.name, number),
            job_id=job_id,
        )

    return add_numbered(session, Version.number, Version.collection_id, collection.id, build, commit=True)


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


def versions_created_since(session: Session, collection_id: str, since: datetime) -> Sequence[Version]:
    """The collection's versions created since ``since``, by number."""
    return session.scalars(
        select(Version)
        .where(Version.collection_id == collection_id, Version.created_at >= since)
        .order_by(Version.number)
    ).all()


def clear_version_documents(session: Session, version_id: str) -> None:
    """Delete the version's document list (a retried build writes it again)."""
    session.execute(delete(VersionDocument).where(VersionDocument.version_id == version_id))


def evaluable_versions(session: Session, collection_id: str) -> Sequence[Version]:
    """The collection's kept live and ready versions, oldest first (what a nightly run may evaluate)."""
    return session.scalars(
        select(Version)
        .where(
            Version.collection_id == collection_id,
            Version.dropped_at.is_(None),
            Version.state.in_([VersionState.live, VersionState.ready]),
        )
        .order_by(Version.number)
    ).all()


def version_counts(session: Session) -> Sequence[tuple[str, int]]:
    """(state, how many) over every version."""
    return session.execute(select(Version.state, func.count()).group_by(Version.state)).tuples().all()
