"""Document revisions -> cached chunks -> cached embeddings -> a version's Chroma collection.

Library code: no HTTP, no queue. The Celery tasks in ``workers/`` call
``prepare_revision`` for each uploaded file and ``build_version`` for each version.

Caches make builds incremental: chunks are keyed by (collection, document sha256,
ingestion-config hash) and embeddings by (collection, model, sha256 of chunk text), so
a version that changes one document re-embeds only that document's chunks.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core import catalog, cputime
from core import chroma as chroma_access
from core.blobs import BlobStore
from core.bm25 import BM25Index
from core.chroma import ChromaClient
from core.config import IngestionConfig
from core.embedding import Embedder
from core.errors import DocumentParseError
from core.filetypes import FileKind
from core.models import (
    ChunkCache,
    Collection,
    Document,
    DocumentRevision,
    Version,
    VersionDocument,
    VersionState,
    utcnow,
)
from ingest import injection, pii
from ingest.context import header, indexed_text
from ingest.ocr import OcrNeeded
from ingest.partition import Chunk, partition_document
from ingest.sandbox import Parser

log = logging.getLogger(__name__)

# Chroma rejects a single add larger than get_max_batch_size() (5,461 here).
WRITE_BATCH = 2000
# A version whose changes (chunks written plus chunks hidden) exceed this share of it is written in full.
DELTA_MAX_SHARE = 0.1
# Embeddings are committed to the cache in slices, so a killed worker loses little work.
EMBED_SLICE = 256


def chunk_id(revision: DocumentRevision, position: int) -> str:
    """Deterministic chunk id (document revision + position): a re-run never duplicates."""
    return f"{revision.id}:{position}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------- caches


def store_chunks(session: Session, collection_id: str, sha256: str, parse_hash: str, chunks: Sequence[Chunk]) -> None:
    with cputime.phase("injection scan"):
        rows: list[dict[str, object]] = [
            {
                "collection_id": collection_id,
                "sha256": sha256,
                "parse_hash": parse_hash,
                "position": position,
                "text": chunk.text,
                "text_sha256": text_sha256(chunk.text),
                "chunk_metadata": {**chunk.metadata, SCAN_KEY: _scan_stamp(injection.scan(chunk.text))},
            }
            for position, chunk in enumerate(chunks)
        ]
    catalog.add_cached_chunks(session, rows)


@dataclass(frozen=True)
class EmbedResult:
    vectors: dict[str, np.ndarray]
    embedded: int
    reused: int
    embedded_shas: frozenset[str] = frozenset()  # the texts (by sha256) that went through the model


def ensure_embeddings(
    session: Session, collection_id: str, embedder: Embedder, texts: Sequence[str], commit: bool = True
) -> EmbedResult:
    """Vectors for ``texts`` keyed by text sha256; only texts missing from the cache are embedded."""
    by_sha = {text_sha256(t): t for t in texts}
    vectors: dict[str, np.ndarray] = {}
    shas = list(by_sha)
    for sha, blob in catalog.cached_vectors(session, collection_id, embedder.model_id, shas).items():
        vectors[sha] = np.frombuffer(blob, dtype=np.float32)
    missing = [sha for sha in shas if sha not in vectors]
    for start in range(0, len(missing), EMBED_SLICE):
        part = missing[start : start + EMBED_SLICE]
        embedded = embedder.embed([by_sha[sha] for sha in part])
        rows: list[dict[str, object]] = []
        for sha, vector in zip(part, embedded, strict=True):
            vectors[sha] = vector
            rows.append(
                {
                    "collection_id": collection_id,
                    "model": embedder.model_id,
                    "text_sha256": sha,
                    "vector": vector.astype(np.float32).tobytes(),
                }
            )
        catalog.add_cached_vectors(session, rows)
        if commit:
            session.commit()
    return EmbedResult(
        vectors=vectors, embedded=len(missing), reused=len(shas) - len(missing), embedded_shas=frozenset(missing)
    )


# ------------------------------------------------------------------ parsing


def _parse(
    blobs: BlobStore,
    collection: Collection,
    revision: DocumentRevision,
    filename: str,
    config: IngestionConfig,
    parse: Parser,
) -> list[Chunk]:
    with cputime.phase("parse"):
        data = blobs.get(collection.id, revision.sha256)
        kind = FileKind(revision.kind, revision.content_type)
        return govern(parse(data, filename, kind, config), config.pii)


def govern(chunks: Sequence[Chunk], mode: str) -> list[Chunk]:
    """Apply the collection's PII policy before anything is cached or embedded."""
    if mode == "off":
        return list(chunks)
    governed = []
    for chunk in chunks:
        found = pii.scan(chunk.text, redact=mode == "redact")
        metadata = {**chunk.metadata, "pii": ",".join(sorted(found.counts)) or None}
        governed.append(Chunk(text=found.text, metadata=metadata))
    return governed


def pii_counts(texts: Sequence[str], mode: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for text in texts:
        counts = pii.placeholder_counts(text) if mode == "redact" else pii.scan(text, redact=False).counts
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
    return totals


# The injection scan of a cached chunk, "<detector version>:<patterns>": a build reads it instead of
# scanning every chunk of the collection again (a tenth of a millisecond each). Never sent to Chroma.
SCAN_KEY = "injection_scan"


def _scan_stamp(found: Sequence[str]) -> str:
    return f"{injection.VERSION}:{','.join(found)}"


def _injection_patterns(row: ChunkCache) -> list[str]:
    """The row's stored scan, or a fresh one (rows cached before it, or by an older detector), stored back."""
    stamp = row.chunk_metadata.get(SCAN_KEY)
    prefix = f"{injection.VERSION}:"
    if isinstance(stamp, str) and stamp.startswith(prefix):
        return [p for p in stamp[len(prefix) :].split(",") if p]
    found = injection.scan(row.text)
    row.chunk_metadata = {**row.chunk_metadata, SCAN_KEY: _scan_stamp(found)}
    return found


@dataclass(frozen=True)
class Screened:
    """One revision's cached chunks under a collection's injection policy."""

    rows: list[ChunkCache]  # what goes into a version
    flags: dict[int, str]  # chunk position -> the injection patterns it matched, for the kept chunks
    counts: dict[str, Any]  # for the revision: {"chunks": n, "dropped": n, "patterns": {name: chunks}}


def screen(rows: Sequence[ChunkCache], mode: str) -> Screened:
    """Apply the injection policy to cached chunks: ``flag`` marks instruction-like ones, ``drop`` leaves them out.

    Runs whenever chunks are embedded or a version is assembled, on the scan stored with
    each cached chunk: a changed policy takes effect at the next build without parsing or
    scanning anything again.
    """
    if mode == "off":
        return Screened(list(rows), {}, {})
    kept: list[ChunkCache] = []
    flags: dict[int, str] = {}
    patterns: Counter[str] = Counter()
    for row in rows:
        found = _injection_patterns(row)
        patterns.update(found)
        if not found:
            kept.append(row)
        elif mode == "flag":
            kept.append(row)
            flags[row.position] = ",".join(found)
    flagged = len(rows) - len(kept) + len(flags)
    counts: dict[str, Any] = (
        {"chunks": flagged, "dropped": len(rows) - len(kept), "patterns": dict(sorted(patterns.items()))}
        if flagged
        else {}
    )
    return Screened(kept, flags, counts)


def _record_injection(revision: DocumentRevision, counts: dict[str, Any]) -> None:
    if (revision.injection_counts or {}) != counts:
        revision.injection_counts = counts


def _indexed(row: ChunkCache, revision: DocumentRevision, config: IngestionConfig) -> str:
    """The text embedded and BM25-indexed for a cached chunk: with its document's context (config.context)."""
    metadata = {**revision.upload_metadata, **row.chunk_metadata}
    return indexed_text(row.text, metadata, revision.document.filename, config.context, config.context_metadata)


def _titles(planned: Planned, config: IngestionConfig) -> dict[str, str]:
    """Each revision's title line (``ingest.context.header`` in ``title`` mode: title, file name and the upload
    metadata marked as context), keyed by revision id, for hybrid's title match; none with ``context: off``."""
    if config.context == "off":
        return {}
    return {
        revision.id: header(
            {**revision.upload_metadata, **rows[0].chunk_metadata},
            revision.document.filename,
            "title",
            config.context_metadata,
        )
        for _, revision, rows in planned
        if rows
    }


def prepare_revision(
    session: Session,
    blobs: BlobStore,
    embedder: Embedder,
    collection: Collection,
    revision: DocumentRevision,
    config: IngestionConfig,
    parse: Parser = partition_document,
) -> tuple[int, int, dict[str, int]]:
    """Parse, chunk and embed one document revision into the caches.

    Returns (chunk count, chunks newly embedded, personal data found by kind), and records
    the instruction-like chunks found on ``revision.injection_counts``; chunks the injection
    policy drops are neither counted nor embedded.

    Idempotent: a revision whose chunks are cached is not parsed again, and cached
    embeddings are not recomputed. Raises ``DocumentParseError`` for a bad file.
    """
    parse_hash = config.parse_hash()
    rows = catalog.cached_chunks(session, collection.id, revision.sha256, parse_hash)
    if not rows:
        chunks = _parse(blobs, collection, revision, revision.document.filename, config, parse)
        store_chunks(session, collection.id, revision.sha256, parse_hash, chunks)
        session.commit()
        rows = catalog.cached_chunks(session, collection.id, revision.sha256, parse_hash)
    screened = screen(rows, config.injection)
    _record_injection(revision, screened.counts)
    texts = [_indexed(row, revision, config) for row in screened.rows]
    result = ensure_embeddings(session, collection.id, embedder, texts)
    found = pii_counts([r.text for r in rows], config.pii) if config.pii != "off" else {}
    return len(screened.rows), result.embedded, found


@dataclass(frozen=True)
class Prepared:
    """What ``prepare_revisions`` did with one revision (as ``prepare_revision`` returns it)."""

    chunks: int
    embedded: int
    pii: dict[str, int]


def prepare_revisions(
    session: Session,
    blobs: BlobStore,
    embedder: Embedder,
    collection: Collection,
    revisions: Sequence[DocumentRevision],
    config: IngestionConfig,
    parse: Parser = partition_document,
) -> dict[str, Prepared | DocumentParseError | OcrNeeded]:
    """``prepare_revision`` for several revisions of one collection, with one pass of the model over all their chunks.

    Each revision is parsed on its own: one that cannot be parsed (``DocumentParseError``) or
    needs OCR (``OcrNeeded``) gets its error as its outcome and the others go on. Their chunks
    are cached in one commit, their missing embeddings computed in one call (batches across
    documents) and cached. Any other error is raised, nothing of it recorded on a revision.
    """
    parse_hash = config.parse_hash()
    cached = catalog.cached_chunks_by_sha(session, collection.id, [r.sha256 for r in revisions], parse_hash)
    outcomes: dict[str, Prepared | DocumentParseError | OcrNeeded] = {}
    parsed: list[str] = []
    for revision in revisions:
        if revision.sha256 in cached or revision.sha256 in parsed:
            continue
        try:
            chunks = _parse(blobs, collection, revision, revision.document.filename, config, parse)
        except (DocumentParseError, OcrNeeded) as exc:
            outcomes[revision.id] = exc
            continue
        store_chunks(session, collection.id, revision.sha256, parse_hash, chunks)
        parsed.append(revision.sha256)
    if parsed:
        session.commit()
        cached.update(catalog.cached_chunks_by_sha(session, collection.id, parsed, parse_hash))
    texts: dict[str, list[str]] = {}
    for revision in revisions:
        if revision.id in outcomes:
            continue
        screened = screen(cached.get(revision.sha256, []), config.injection)
        _record_injection(revision, screened.counts)
        texts[revision.id] = [_indexed(row, revision, config) for row in screened.rows]
    result = ensure_embeddings(session, collection.id, embedder, [t for group in texts.values() for t in group])
    fresh = set(result.embedded_shas)  # each counted once, for the first revision that has it (as one by one)
    for revision in revisions:
        if revision.id in outcomes:
            continue
        mine = {text_sha256(t) for t in texts[revision.id]} & fresh
        fresh -= mine
        rows = cached.get(revision.sha256, [])
        found = pii_counts([r.text for r in rows], config.pii) if config.pii != "off" else {}
        outcomes[revision.id] = Prepared(len(texts[revision.id]), len(mine), found)
    return outcomes


# ----------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildResult:
    document_count: int
    chunk_count: int
    embedded: int
    reused: int
    skipped: list[dict[str, str]]


def _node_metadata(
    row: ChunkCache, document: Document, revision: DocumentRevision, flags: str | None = None
) -> dict[str, object]:
    metadata: dict[str, object] = dict(revision.upload_metadata)
    metadata.pop("injection", None)  # only the screening may mark a chunk
    metadata.update(row.chunk_metadata)
    metadata.pop(SCAN_KEY, None)
    if flags:
        metadata["injection"] = flags
    metadata.update(
        {
            "filename": document.filename,
            "document_id": document.id,
            "revision": revision.number,
            "sha256": revision.sha256,
            "position": row.position,
        }
    )
    return metadata


def diff_against(
    previous: Sequence[VersionDocument], current: Sequence[tuple[Document, DocumentRevision]]
) -> dict[str, list[str]]:
    before = {vd.document_id: (vd.revision_id, vd.filename) for vd in previous}
    after = {doc.id: (rev.id, doc.filename) for doc, rev in current}
    return {
        "added": sorted(after[d][1] for d in after.keys() - before.keys()),
        "replaced": sorted(after[d][1] for d in after.keys() & before.keys() if after[d][0] != before[d][0]),
        "removed": sorted(before[d][1] for d in before.keys() - after.keys()),
    }


@dataclass(frozen=True)
class Delta:
    base: Version
    unchanged: set[str]  # documents whose chunks the base holds as they are now
    hidden: set[str]  # documents of the base whose chunks are not part of the new version
    hidden_chunks: int


def _context_of(config: dict[str, Any]) -> tuple[str, list[str]]:
    return config.get("context", "off"), list(config.get("context_metadata") or [])


def plan_delta(
    session: Session,
    version: Version,
    parse_hash: str,
    planned: Sequence[tuple[Document, DocumentRevision, Sequence[ChunkCache]]],
) -> Delta | None:
    """A delta of the newest full version when the chunks to write plus those to hide are at
    most ``DELTA_MAX_SHARE`` of the version; else None, and the version is written in full
    (which also bounds how far a chain of deltas drifts from its base)."""
    base = catalog.delta_base(session, version)
    if base is None or IngestionConfig.recorded(base.config).parse_hash() != parse_hash:
        return None
    # The base's chunks were screened under its own policy (none, before screening existed), and
    # embedded with its own context headers (none, before they existed).
    if base.config.get("injection") != version.config.get("injection"):
        return None
    if _context_of(base.config) != _context_of(version.config):
        return None
    in_base = {vd.document_id: vd for vd in catalog.version_documents(session, base)}
    now = {document.id: (revision.id, len(rows)) for document, revision, rows in planned}
    unchanged = {d for d, (revision_id, _) in now.items() if d in in_base and in_base[d].revision_id == revision_id}
    hidden = set(in_base) - unchanged
    changed_chunks = sum(n for d, (_, n) in now.items() if d not in unchanged)
    hidden_chunks = sum(in_base[d].chunk_count for d in hidden)
    total = sum(n for _, n in now.values())
    if changed_chunks + hidden_chunks > DELTA_MAX_SHARE * max(total, 1):
        return None
    return Delta(base, unchanged, hidden, hidden_chunks)


Planned = list[tuple[Document, DocumentRevision, list[ChunkCache]]]


@dataclass
class _Plan:
    """The chunks a build will hold, per document, after screening; and what could not be parsed."""

    planned: Planned
    flags: dict[str, dict[int, str]]  # revision id -> its flagged chunks
    skipped: list[dict[str, str]]


def _plan_chunks(
    session: Session,
    blobs: BlobStore,
    collection: Collection,
    config: IngestionConfig,
    parse: Parser,
    on_progress: Callable[[int, int], None] | None,
) -> _Plan:
    """Every buildable revision's cached chunks, parsing again those cached under another config."""
    parse_hash = config.parse_hash()
    snapshot = catalog.buildable_revisions(session, collection.id)
    plan = _Plan([], {}, [])
    cached = catalog.cached_chunks_by_sha(
        session, collection.id, [revision.sha256 for _, revision in snapshot], parse_hash
    )
    for done, (document, revision) in enumerate(snapshot, start=1):
        rows = cached.get(revision.sha256, [])
        if not rows:  # parsed under another ingestion config: parse again now
            try:
                store_chunks(
                    session,
                    collection.id,
                    revision.sha256,
                    parse_hash,
                    _parse(blobs, collection, revision, document.filename, config, parse),
                )
                session.commit()
            except DocumentParseError as exc:
                plan.skipped.append({"filename": document.filename, "error": exc.detail})
                rows = []
            else:
                rows = catalog.cached_chunks(session, collection.id, revision.sha256, parse_hash)
        if rows:  # a document whose chunks are all dropped stays in the version, with no chunks
            screened = screen(rows, config.injection)
            _record_injection(revision, screened.counts)
            plan.flags[revision.id] = screened.flags
            plan.planned.append((document, revision, screened.rows))
        if on_progress:
            on_progress(done, len(snapshot))
    return plan


def _apply_delta(version: Version, delta: Delta | None, planned: Planned) -> Planned:
    """Record on ``version`` what it reads from its base; the documents its own collection must hold."""
    version.base_version_number = delta.base.number if delta else None
    version.base_collection = delta.base.chroma_collection if delta else None
    version.hidden_documents = sorted(delta.hidden) if delta else []
    version.hidden_chunk_count = delta.hidden_chunks if delta else 0
    return [p for p in planned if p[0].id not in delta.unchanged] if delta else planned


@cputime.phase("chroma write")
def _write_vectors(
    client: ChromaClient,
    version: Version,
    plan: _Plan,
    written: Planned,
    indexed: dict[tuple[str, int], str],
    vectors: dict[str, np.ndarray],
) -> None:
    """Write ``written``'s chunks into a fresh Chroma collection and check that Chroma holds them all."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    chroma_collection = chroma_access.fresh_collection(client, version.chroma_collection)
    store = chroma_access.vector_store(chroma_collection)
    batch = min(WRITE_BATCH, chroma_access.max_batch_size(client))
    nodes: list[TextNode] = []
    expected = 0
    for document, revision, rows in written:
        for row in rows:
            node = TextNode(
                id_=chunk_id(revision, row.position),
                text=row.text,
                metadata=_node_metadata(row, document, revision, plan.flags[revision.id].get(row.position)),
                embedding=vectors[text_sha256(indexed[revision.id, row.position])].tolist(),
            )
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=document.id)
            nodes.append(node)
            if len(nodes) >= batch:
                store.add(nodes)
                expected += len(nodes)
                nodes = []
    if nodes:
        store.add(nodes)
        expected += len(nodes)
    stored = chroma_collection.count()
    if stored != expected:
        raise RuntimeError(f"Chroma holds {stored} vectors for {version.chroma_collection}, expected {expected}")


def _record_contents(session: Session, collection: Collection, version: Version, plan: _Plan, embedded: int) -> None:
    """The version's documents, counts and changes against the previous version, in the catalog."""
    previous = catalog.latest_version(
        session, collection.id, [VersionState.live, VersionState.ready, VersionState.archived]
    )
    previous_docs = catalog.version_documents(session, previous) if previous and previous.id != version.id else []
    current = [(d, r) for d, r, _ in plan.planned]
    catalog.clear_version_documents(session, version.id)  # a retried build
    previous_revisions = {vd.revision_id for vd in previous_docs}
    # Embeddings computed for this version: by the parse tasks of its new revisions, and here.
    embedded_count = embedded + sum(r.embedded_count for _, r in current if r.id not in previous_revisions)
    for document, revision, rows in plan.planned:
        session.add(
            VersionDocument(
                version_id=version.id,
                document_id=document.id,
                revision_id=revision.id,
                filename=document.filename,
                chunk_count=len(rows),
            )
        )
    chunk_count = sum(len(rows) for _, _, rows in plan.planned)
    version.document_count = len(plan.planned)
    version.chunk_count = chunk_count
    version.embedded_chunk_count = min(embedded_count, chunk_count)
    version.reused_chunk_count = chunk_count - version.embedded_chunk_count
    version.changes = {**diff_against(previous_docs, current), "skipped": plan.skipped}


def build_version(
    session: Session,
    client: ChromaClient,
    blobs: BlobStore,
    embedder: Embedder,
    collection: Collection,
    version: Version,
    on_progress: Callable[[int, int], None] | None = None,
    parse: Parser = partition_document,
) -> BuildResult:
    """Materialise ``version`` as its own Chroma collection from the current documents.

    When few chunks changed since the newest full version, ``version`` becomes a delta of
    it (see ``plan_delta``): its collection holds only the new chunks, and queries read both.
    Writing vectors into Chroma, not embedding, is then what a build of a big collection
    with one changed document spends its time on.

    The Chroma collection is recreated from scratch on every attempt, so a retried
    build after a killed worker never holds duplicate or half-written chunks; the
    version only becomes ``ready`` after its vector count has been checked.
    """
    started = time.monotonic()
    config = IngestionConfig.model_validate(version.config)
    plan = _plan_chunks(session, blobs, collection, config, parse, on_progress)
    # Embedded and BM25-indexed with the document's context (config.context); the nodes keep the chunk's text.
    chunks = [(revision, row) for _, revision, rows in plan.planned for row in rows]
    indexed = {(revision.id, row.position): _indexed(row, revision, config) for revision, row in chunks}
    embedded = ensure_embeddings(session, collection.id, embedder, list(indexed.values()))
    written = _apply_delta(version, plan_delta(session, version, config.parse_hash(), plan.planned), plan.planned)
    _write_vectors(client, version, plan, written, indexed, embedded.vectors)
    # The BM25 index for hybrid retrieval is built for every version, so hybrid can be switched on later.
    with cputime.phase("bm25 index"):
        lexical = BM25Index.build(
            [chunk_id(revision, row.position) for revision, row in chunks],
            [indexed[revision.id, row.position] for revision, row in chunks],
            _titles(plan.planned, config),
        )
        version.bm25_sha256 = blobs.put(collection.id, lexical.dumps())
    _record_contents(session, collection, version, plan, embedded.embedded)
    version.state = VersionState.ready
    version.built_at = utcnow()
    version.build_seconds = round(time.monotonic() - started, 3)
    session.flush()
    return BuildResult(
        len(plan.planned), version.chunk_count, version.embedded_chunk_count, version.reused_chunk_count, plan.skipped
    )
