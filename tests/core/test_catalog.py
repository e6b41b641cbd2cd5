"""Catalog behaviour, on SQLite and on PostgreSQL (the `database_url` fixture runs both)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import catalog
from core.chroma import version_collection_name
from core.config import CollectionConfig
from core.db import Database, create_schema
from core.errors import CollectionExists, ConcurrentChange, InvalidInput, VersionNotReady
from core.models import Base, Collection, DocumentStatus, JobKind, QueryLog, Version, VersionState, utcnow


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.session() as s:
        yield s


def _collection(session: Session, name: str = "hr-policies") -> Collection:
    collection = catalog.create_collection(session, name, "", ["a@example.com"], CollectionConfig())
    session.commit()
    return collection


def _file(name: str, sha: str, metadata: dict[str, object] | None = None) -> catalog.IncomingFile:
    return catalog.IncomingFile(name, sha * 64, 10, "txt", "text/plain", dict(metadata or {}))


def _ready_version(session: Session, collection: Collection) -> Version:
    job = catalog.create_job(session, JobKind.build, collection.id)
    version = catalog.create_version(session, collection, job.id, version_collection_name)
    version.state = VersionState.ready
    session.commit()
    return version


def test_migrations_create_exactly_the_model_schema(db: Database) -> None:
    """A model change without a migration fails here."""
    create_schema(db.engine)  # a second upgrade is a no-op
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_collection_names_are_unique(session: Session) -> None:
    _collection(session)
    with pytest.raises(CollectionExists):
        catalog.create_collection(session, "hr-policies", "", [], CollectionConfig())


@pytest.mark.parametrize(
    "name", ["ab", "Has-Caps", "-lead", "trail-", "double--hyphen", "a" * 49, "sp ace", "ü-nicode"]
)
def test_collection_name_must_be_a_lowercase_slug(session: Session, name: str) -> None:
    with pytest.raises(InvalidInput):
        catalog.create_collection(session, name, "", [], CollectionConfig())


def test_identical_reupload_is_a_noop_and_new_bytes_are_a_new_revision(session: Session) -> None:
    collection = _collection(session)
    job = catalog.create_job(session, JobKind.ingest, collection.id)
    first = catalog.record_upload(session, collection, [_file("a.txt", "a")], job)
    assert first[0].changed and first[0].revision.number == 1

    again = catalog.record_upload(session, collection, [_file("a.txt", "a")], job)
    assert not again[0].changed and again[0].revision.id == first[0].revision.id

    newer = catalog.record_upload(session, collection, [_file("a.txt", "b")], job)
    assert newer[0].changed and newer[0].revision.number == 2
    assert newer[0].document.id == first[0].document.id

    relabelled = catalog.record_upload(session, collection, [_file("a.txt", "b", {"team": "x"})], job)
    assert relabelled[0].changed, "the same bytes with other upload metadata are a new revision"


def test_failed_new_revision_keeps_serving_the_previous_good_one(session: Session) -> None:
    collection = _collection(session)
    job = catalog.create_job(session, JobKind.ingest, collection.id)
    good = catalog.record_upload(session, collection, [_file("a.txt", "a")], job)[0].revision
    good.status = DocumentStatus.ready
    bad = catalog.record_upload(session, collection, [_file("a.txt", "b")], job)[0].revision
    bad.status = DocumentStatus.failed
    session.commit()
    assert [rev.id for _, rev in catalog.buildable_revisions(session, collection.id)] == [good.id]


def test_only_one_build_is_pending_per_collection(session: Session) -> None:
    collection = _collection(session)
    first = catalog.claim_build(session, collection.id)
    session.commit()
    assert first is not None
    assert catalog.claim_build(session, collection.id) is None
    catalog.release_build(session, collection.id, first.id)
    session.commit()
    assert catalog.claim_build(session, collection.id) is not None


def test_publish_and_rollback_walk_the_live_history(session: Session) -> None:
    collection = _collection(session)
    v1, v2, v3 = (_ready_version(session, collection) for _ in range(3))
    for version in (v1, v2, v3):
        catalog.publish(session, collection, version)
        session.commit()
    assert collection.live_version_id == v3.id
    assert session.get(Version, v2.id).state == VersionState.archived  # type: ignore[union-attr]

    assert catalog.rollback(session, collection).id == v2.id
    session.commit()
    assert catalog.rollback(session, collection).id == v1.id
    session.commit()
    with pytest.raises(VersionNotReady):
        catalog.rollback(session, collection)


def test_building_version_cannot_be_published(session: Session) -> None:
    collection = _collection(session)
    job = catalog.create_job(session, JobKind.build, collection.id)
    version = catalog.create_version(session, collection, job.id, version_collection_name)
    with pytest.raises(VersionNotReady):
        catalog.publish(session, collection, version)


def test_concurrent_publish_one_wins_the_other_conflicts(db: Database) -> None:
    with db.session() as setup:
        collection = _collection(setup)
        v1, v2 = _ready_version(setup, collection), _ready_version(setup, collection)
        collection_id = collection.id
    with db.session() as a, db.session() as b:
        coll_a, coll_b = a.get(Collection, collection_id), b.get(Collection, collection_id)
        assert coll_a is not None and coll_b is not None
        catalog.publish(a, coll_a, a.get(Version, v1.id))  # type: ignore[arg-type]
        a.commit()
        with pytest.raises(ConcurrentChange):
            # b still believes nothing is live: its compare-and-set must fail, not overwrite.
            catalog.publish(b, coll_b, b.get(Version, v2.id))  # type: ignore[arg-type]
    with db.session() as check:
        assert check.get(Collection, collection_id).live_version_id == v1.id  # type: ignore[union-attr]


def test_rollback_marks_live_a_version_read_while_it_was_live(db: Database) -> None:
    """Regression: in a burst of publish and rollback calls, the live pointer moved to a version
    that stayed marked archived (no version marked live; retention could drop it). The rollback
    had read its target while another call had it live, and the live pointer had moved back
    since: the ORM saw no change of state to write."""
    with db.session() as setup:
        collection = _collection(setup)
        v1, v2 = _ready_version(setup, collection), _ready_version(setup, collection)
        catalog.publish(setup, collection, v1)
        setup.commit()
        catalog.publish(setup, collection, v2)
    with db.session() as a, db.session() as b:
        coll_a, coll_b = a.get(Collection, collection.id), b.get(Collection, collection.id)
        assert coll_a is not None and coll_b is not None and coll_b.live_version_id == v2.id
        catalog.publish(a, coll_a, a.get(Version, v1.id))  # type: ignore[arg-type]
        a.commit()
        target = b.get(Version, v1.id)  # read (and kept by the session) while live
        assert target is not None and target.state == VersionState.live
        catalog.publish(a, coll_a, a.get(Version, v2.id))  # type: ignore[arg-type]
        a.commit()
        assert catalog.rollback(b, coll_b) is target  # the pointer is back on v2: the rollback goes ahead
    with db.session() as check:
        states = {v.number: v.state for v in check.scalars(select(Version).order_by(Version.number))}
        assert states == {1: VersionState.live, 2: VersionState.archived}
        assert check.get(Collection, collection.id).live_version_id == v1.id  # type: ignore[union-attr]


def test_retention_keeps_the_newest_non_live_versions(session: Session) -> None:
    collection = _collection(session)
    versions = [_ready_version(session, collection) for _ in range(4)]
    catalog.publish(session, collection, versions[-1])
    session.commit()
    dropped = catalog.versions_to_drop(session, collection, keep=2)
    assert [v.number for v in dropped] == [1]


def test_query_log_retention_deletes_only_old_rows(session: Session) -> None:
    collection = _collection(session)
    for age_days in (1, 10, 100):
        session.add(
            QueryLog(
                collection_id=collection.id,
                version_number=1,
                question=f"{age_days}",
                mode="answer",
                answer_mode="none",
                created_at=utcnow() - timedelta(days=age_days),
            )
        )
    session.commit()
    assert catalog.prune_query_log(session, timedelta(days=30)) == 1
    session.commit()
    assert sorted(q.question for q in session.query(QueryLog)) == ["1", "10"]


def test_upgrading_a_catalog_that_holds_data_keeps_it(database_url: str) -> None:
    """Columns added by later migrations need defaults for rows that already exist."""
    from alembic import command

    from core.db import _alembic_config, make_engine

    engine = make_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0002")
        conn.execute(
            text(
                "INSERT INTO collections (id, name, description, owners, config, created_at, updated_at) "
                "VALUES ('c1', 'old-kb', '', '[]', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO versions (id, collection_id, number, state, config, embedding_model, "
                "chroma_collection, document_count, chunk_count, embedded_chunk_count, reused_chunk_count, "
                "changes, created_at) VALUES ('v1', 'c1', 1, 'live', '{}', 'm', 'rk_old-kb_v1', 0, 0, 0, 0, "
                "'{}', CURRENT_TIMESTAMP)"
            )
        )
    create_schema(engine)
    with Session(engine) as session:
        version = session.get(Version, "v1")
        assert version is not None and version.gate == {}
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def test_live_embedding_models_are_those_of_live_versions_only(session: Session) -> None:
    """What the API warms up at start: the models that live versions are queried with."""
    assert catalog.live_embedding_models(session) == []
    plain = _collection(session, "plain")
    catalog.publish(session, plain, _ready_version(session, plain))
    quantized = _collection(session, "quantized")
    int8 = _ready_version(session, quantized)
    int8.embedding_model = "all-MiniLM-L6-v2-int8"
    _ready_version(session, _collection(session, "unpublished")).embedding_model = "all-MiniLM-L6-v2-int8"
    session.commit()
    assert catalog.live_embedding_models(session) == ["all-MiniLM-L6-v2"]
    catalog.publish(session, quantized, int8)
    session.commit()
    assert catalog.live_embedding_models(session) == ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8"]


def test_version_stamp_changes_with_everything_a_query_reads(db: Database, session: Session) -> None:
    """Query engines cache what they resolved under this stamp: every change a query must see changes it."""

    def stamp(number: int | None = None) -> object:
        with db.engine.connect() as connection:
            return catalog.version_stamp(connection, "hr-policies", number)

    assert stamp() is None  # no such collection
    collection = _collection(session)
    v1, v2 = _ready_version(session, collection), _ready_version(session, collection)
    nothing_live = stamp()
    catalog.publish(session, collection, v1)
    session.commit()
    seen = [nothing_live, stamp()]
    assert stamp() == seen[-1]  # unchanged catalog, same stamp
    pinned = stamp(2)

    catalog.publish(session, collection, v2)  # the live pointer moves, v1 is archived
    session.commit()
    seen.append(stamp())
    assert stamp(2) != pinned  # v2's state changed (ready -> live)

    collection.config = {**collection.config, "retrieval": {"top_k": 9}}
    session.commit()
    seen.append(stamp())

    v2.dropped_at = utcnow()
    session.commit()
    seen.append(stamp())

    catalog.rollback(session, collection)
    session.commit()
    seen.append(stamp())
    assert len(set(seen)) == len(seen), seen


def test_cache_rows_written_twice_keep_the_first_and_read_back_in_order(session: Session) -> None:
    """The caches' inserts are dialect-specific (ON CONFLICT DO NOTHING on SQLite and PostgreSQL):
    a second writer of the same key (a re-sent parse) is skipped, not an error."""
    collection = _collection(session)

    def chunk(position: int, text: str) -> dict[str, object]:
        return {
            "collection_id": collection.id,
            "sha256": "d" * 64,
            "parse_hash": "p" * 16,
            "position": position,
            "text": text,
            "text_sha256": text * 64,
            "chunk_metadata": {},
        }

    catalog.add_cached_chunks(session, [chunk(1, "b"), chunk(0, "a")])
    catalog.add_cached_chunks(session, [chunk(0, "x"), chunk(2, "c")])
    vector = {"collection_id": collection.id, "model": "m", "text_sha256": "a" * 64, "vector": b"\x00\x00\x80?"}
    catalog.add_cached_vectors(session, [vector])
    catalog.add_cached_vectors(session, [{**vector, "vector": b"\x00\x00\x00@"}])
    catalog.add_cached_vectors(session, [])
    session.commit()

    rows = catalog.cached_chunks(session, collection.id, "d" * 64, "p" * 16)
    assert [(r.position, r.text) for r in rows] == [(0, "a"), (1, "b"), (2, "c")]
    by_sha = catalog.cached_chunks_by_sha(session, collection.id, ["d" * 64, "e" * 64, "d" * 64], "p" * 16)
    assert list(by_sha) == ["d" * 64] and [r.text for r in by_sha["d" * 64]] == ["a", "b", "c"]
    assert catalog.cached_chunks(session, collection.id, "d" * 64, "q" * 16) == []
    assert catalog.cached_vectors(session, collection.id, "m", ["a" * 64, "b" * 64]) == {"a" * 64: b"\x00\x00\x80?"}
    assert catalog.cached_vectors(session, collection.id, "other", ["a" * 64]) == {}
