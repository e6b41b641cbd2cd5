"""Incremental builds through the real embedding model into a real Chroma server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chromadb.api import ClientAPI
from sqlalchemy.orm import Session

from core import catalog, chroma
from core.blobs import BlobStore
from core.config import CollectionConfig, IngestionConfig
from core.db import Database, create_schema
from core.embedding import Embedder
from core.filetypes import detect_file_kind
from core.models import Collection, DocumentRevision, DocumentStatus, JobKind, Version
from ingest.pipeline import build_version, prepare_revision
from tests.conftest import DATASETS, EXAMPLE_DOCS

DOCS = [EXAMPLE_DOCS / "fake-text.txt", EXAMPLE_DOCS / "simple.docx", EXAMPLE_DOCS / "README.md"]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(batch_size=16)


@pytest.fixture
def env(tmp_path: Path, chroma_server: str) -> Iterator[tuple[Session, BlobStore, ClientAPI]]:
    db = Database(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    create_schema(db.engine)
    with db.sessions() as session:
        yield session, BlobStore(tmp_path / "blobs"), chroma.connect(chroma_server)
    db.dispose()


def _upload(
    session: Session,
    blobs: BlobStore,
    collection: Collection,
    path: Path,
    name: str | None = None,
    metadata: dict[str, object] | None = None,
) -> DocumentRevision:
    data = path.read_bytes()
    name = name or path.name
    kind = detect_file_kind(data, name)
    job = catalog.create_job(session, JobKind.ingest, collection.id)
    incoming = catalog.IncomingFile(
        name, blobs.put(collection.id, data), len(data), kind.kind, kind.content_type, dict(metadata or {})
    )
    revision = catalog.record_upload(session, collection, [incoming], job)[0].revision
    session.commit()
    return revision


def _prepare(
    session: Session, blobs: BlobStore, embedder: Embedder, collection: Collection, revision: DocumentRevision
) -> int:
    chunks, embedded, _ = prepare_revision(session, blobs, embedder, collection, revision, IngestionConfig())
    # What the parse task records after prepare_revision.
    revision.status, revision.chunk_count, revision.embedded_count = DocumentStatus.ready, chunks, embedded
    session.commit()
    return chunks


def _build(
    session: Session, client: ClientAPI, blobs: BlobStore, embedder: Embedder, collection: Collection
) -> Version:
    job = catalog.create_job(session, JobKind.build, collection.id)
    version = catalog.create_version(session, collection, job.id, chroma.version_collection_name)
    build_version(session, client, blobs, embedder, collection, version)
    session.commit()
    return version


def test_version_collection_holds_every_chunk_with_metadata(
    env: tuple[Session, BlobStore, ClientAPI], embedder: Embedder
) -> None:
    session, blobs, client = env
    collection = catalog.create_collection(session, "meta-check", "", [], CollectionConfig())
    pdf = _upload(
        session,
        blobs,
        collection,
        DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf",
        metadata={"department": "research"},
    )
    chunks = _prepare(session, blobs, embedder, collection, pdf)
    version = _build(session, client, blobs, embedder, collection)

    stored = client.get_collection(version.chroma_collection).get(include=["metadatas", "documents", "embeddings"])
    assert len(stored["ids"]) == version.chunk_count == chunks
    assert sorted(stored["ids"]) == sorted(f"{pdf.id}:{i}" for i in range(chunks)), "ids are revision + position"
    meta = stored["metadatas"][0]
    assert meta["filename"] == "distilbert.pdf" and meta["department"] == "research"
    assert meta["document_id"] == pdf.document_id and isinstance(meta["page"], int)
    assert len(stored["embeddings"][0]) == 384


def test_replacing_one_document_re_embeds_only_its_chunks(
    env: tuple[Session, BlobStore, ClientAPI], embedder: Embedder
) -> None:
    session, blobs, client = env
    collection = catalog.create_collection(session, "incremental", "", [], CollectionConfig())
    for path in DOCS:
        _prepare(session, blobs, embedder, collection, _upload(session, blobs, collection, path))
    v1 = _build(session, client, blobs, embedder, collection)
    assert v1.document_count == 3 and v1.embedded_chunk_count == v1.chunk_count

    before = embedder.texts_embedded
    replacement = _upload(session, blobs, collection, EXAMPLE_DOCS / "fake-html.html", name="README.md")
    replaced_chunks = _prepare(session, blobs, embedder, collection, replacement)
    assert embedder.texts_embedded - before == replaced_chunks, "only the new document's chunks are embedded"

    at_build = embedder.texts_embedded
    v2 = _build(session, client, blobs, embedder, collection)
    assert embedder.texts_embedded == at_build, "the build itself embeds nothing: every vector is cached"
    assert v2.embedded_chunk_count == replaced_chunks
    assert v2.reused_chunk_count == v2.chunk_count - replaced_chunks
    assert v2.changes["replaced"] == ["README.md"] and v2.changes["added"] == []
    # v1 is untouched: queries pinned to it still see the old README.
    assert client.get_collection(v1.chroma_collection).count() == v1.chunk_count


def test_rebuilding_after_a_partial_write_leaves_no_duplicates(
    env: tuple[Session, BlobStore, ClientAPI], embedder: Embedder
) -> None:
    """A worker killed mid-build left vectors behind; the retried build must not keep them."""
    session, blobs, client = env
    collection = catalog.create_collection(session, "retry-safe", "", [], CollectionConfig())
    _prepare(session, blobs, embedder, collection, _upload(session, blobs, collection, DOCS[0]))
    job = catalog.create_job(session, JobKind.build, collection.id)
    version = catalog.create_version(session, collection, job.id, chroma.version_collection_name)
    half = chroma.fresh_collection(client, version.chroma_collection)
    half.add(ids=["stale-1", "stale-2"], embeddings=[[0.1] * 384, [0.2] * 384], documents=["x", "y"])

    build_version(session, client, blobs, embedder, collection, version)
    build_version(session, client, blobs, embedder, collection, version)  # a redelivered task runs it again
    stored = client.get_collection(version.chroma_collection).get()
    assert "stale-1" not in stored["ids"]
    assert len(stored["ids"]) == version.chunk_count


def test_changed_ingestion_config_reparses_at_build(
    env: tuple[Session, BlobStore, ClientAPI], embedder: Embedder
) -> None:
    session, blobs, client = env
    collection = catalog.create_collection(session, "rechunk", "", [], CollectionConfig())
    _prepare(
        session,
        blobs,
        embedder,
        collection,
        _upload(session, blobs, collection, EXAMPLE_DOCS / "book-war-and-peace-1p.txt"),
    )
    v1 = _build(session, client, blobs, embedder, collection)
    collection.config = CollectionConfig(ingestion=IngestionConfig(max_characters=300)).model_dump()
    session.commit()
    v2 = _build(session, client, blobs, embedder, collection)
    assert v2.chunk_count > v1.chunk_count
    assert v2.config["max_characters"] == 300


def test_redacted_personal_data_never_reaches_chroma(
    env: tuple[Session, BlobStore, ClientAPI], embedder: Embedder, tmp_path: Path
) -> None:
    session, blobs, client = env
    collection = catalog.create_collection(
        session, "pii-kb", "", [], CollectionConfig.model_validate({"pii": "redact"})
    )
    source = tmp_path / "staff.txt"
    source.write_text("Contact Jane at jane.doe@example.com or +44 20 7946 0958 about payroll.\n")
    revision = _upload(session, blobs, collection, source)
    config = catalog.collection_config(collection).ingestion
    chunks, _, found = prepare_revision(session, blobs, embedder, collection, revision, config)
    assert found == {"email": 1, "phone": 1}
    revision.status, revision.chunk_count = DocumentStatus.ready, chunks
    session.commit()
    version = _build(session, client, blobs, embedder, collection)
    stored = client.get_collection(version.chroma_collection).get(include=["documents", "metadatas"])
    text = " ".join(stored["documents"])
    assert "jane.doe@example.com" not in text and "7946" not in text and "[EMAIL]" in text
    assert stored["metadatas"][0]["pii"] == "email,phone"
