"""Chunk and embedding caches repository: what a build re-uses instead of parsing and embedding again.

Chunks are keyed by (collection, document sha256, ingestion-config hash, position) and
vectors by (collection, model, sha256 of chunk text). Two workers may fill the same key at
once (a re-sent parse, a build beside a parse), so rows are written with the dialect's
INSERT ... ON CONFLICT DO NOTHING: the first writer wins and the second is not an error.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.models import ChunkCache, EmbeddingCache

# Rows per statement: keeps IN lists and multi-row VALUES well under the databases' parameter limits.
_BATCH = 500


def _insert_ignore(
    session: Session, table: type[ChunkCache] | type[EmbeddingCache], rows: Sequence[dict[str, object]]
) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(table).values(list(rows)).on_conflict_do_nothing())


def cached_chunks(session: Session, collection_id: str, sha256: str, parse_hash: str) -> list[ChunkCache]:
    """The cached chunks of one document content under one ingestion config, in order."""
    return list(
        session.scalars(
            select(ChunkCache)
            .where(
                ChunkCache.collection_id == collection_id,
                ChunkCache.sha256 == sha256,
                ChunkCache.parse_hash == parse_hash,
            )
            .order_by(ChunkCache.position)
        )
    )


def cached_chunks_by_sha(
    session: Session, collection_id: str, shas: Sequence[str], parse_hash: str
) -> dict[str, list[ChunkCache]]:
    """``cached_chunks`` for many documents in a few queries (a build reads every document's chunks)."""
    found: dict[str, list[ChunkCache]] = {}
    unique = list(dict.fromkeys(shas))
    for start in range(0, len(unique), _BATCH):
        for row in session.scalars(
            select(ChunkCache)
            .where(
                ChunkCache.collection_id == collection_id,
                ChunkCache.sha256.in_(unique[start : start + _BATCH]),
                ChunkCache.parse_hash == parse_hash,
            )
            .order_by(ChunkCache.sha256, ChunkCache.position)
        ):
            found.setdefault(row.sha256, []).append(row)
    return found


def add_cached_chunks(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Insert chunk cache rows (``ChunkCache`` columns); a row whose key is cached already is skipped."""
    for start in range(0, len(rows), _BATCH):
        _insert_ignore(session, ChunkCache, rows[start : start + _BATCH])


def cached_vectors(session: Session, collection_id: str, model: str, text_shas: Sequence[str]) -> dict[str, bytes]:
    """The cached vectors (float32 bytes) of those of ``text_shas`` embedded with ``model``."""
    found: dict[str, bytes] = {}
    for start in range(0, len(text_shas), _BATCH):
        part = text_shas[start : start + _BATCH]
        for sha, blob in session.execute(
            select(EmbeddingCache.text_sha256, EmbeddingCache.vector).where(
                EmbeddingCache.collection_id == collection_id,
                EmbeddingCache.model == model,
                EmbeddingCache.text_sha256.in_(part),
            )
        ).tuples():
            found[sha] = blob
    return found


def add_cached_vectors(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Insert embedding cache rows (``EmbeddingCache`` columns); a vector cached already is skipped."""
    _insert_ignore(session, EmbeddingCache, rows)
