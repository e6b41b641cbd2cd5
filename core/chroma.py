"""Chroma access: the HTTP client, version collection naming, create, read and drop.

The only module that imports ``chromadb`` and LlamaIndex's Chroma vector-store wrapper
(``tests/test_project.py`` holds the rule): the rest of ragkeep uses the names below, so
a Chroma upgrade touches this file and its tests.

API and workers always talk to a Chroma *server* (``chroma run``): a PersistentClient
shared by several processes does not see other processes' new vectors in queries.
Collections are created without an embedding function so that Chroma never fetches
its default ONNX model; ragkeep always passes embeddings itself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import GetResult, Where
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

if TYPE_CHECKING:
    from llama_index.core.vector_stores.types import BasePydanticVectorStore

ChromaClient: TypeAlias = ClientAPI
"""A connection to the Chroma server (``connect``)."""
ChromaCollection: TypeAlias = Collection
"""One physical Chroma collection (a version's vectors)."""
FilterValue: TypeAlias = str | int | float | bool
Filters: TypeAlias = Mapping[str, FilterValue | list[FilterValue]]
StoredChunk: TypeAlias = tuple[str | None, Mapping[str, Any] | None, Any]
"""What Chroma holds of one chunk: its text, metadata and vector."""
Rows: TypeAlias = dict[str, StoredChunk]
"""Chunk id -> its stored text, metadata and vector."""

_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def version_collection_name(collection: str, number: int) -> str:
    """``rk_<collection>_v<N>``: the physical Chroma collection of one version."""
    name = f"rk_{collection}_v{number}"
    if not _NAME_OK.match(name):
        raise ValueError(f"invalid Chroma collection name {name!r}")
    return name


def connect(url: str) -> ChromaClient:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"RAGKEEP_CHROMA_URL must be http(s)://host:port, got {url!r}")
    return chromadb.HttpClient(
        host=parsed.hostname,
        port=parsed.port or (443 if parsed.scheme == "https" else 80),
        ssl=parsed.scheme == "https",
        settings=ChromaSettings(anonymized_telemetry=False),
    )


def heartbeat(client: ChromaClient) -> None:
    client.heartbeat()


def fresh_collection(client: ChromaClient, name: str) -> ChromaCollection:
    """An empty collection named ``name`` (an older one of that name is removed first)."""
    drop_collection(client, name)
    return client.create_collection(name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)


def get_collection(client: ChromaClient, name: str) -> ChromaCollection | None:
    try:
        return client.get_collection(name, embedding_function=None)
    except NotFoundError:
        return None


def drop_collection(client: ChromaClient, name: str) -> bool:
    try:
        client.delete_collection(name)
        return True
    except NotFoundError:
        return False


def max_batch_size(client: ChromaClient) -> int:
    return int(client.get_max_batch_size())


def collection_stats(collection: ChromaCollection) -> dict[str, Any]:
    return {"name": collection.name, "count": collection.count()}


def where(filters: Filters) -> dict[str, Any] | None:
    """Chroma's ``where`` for an AND of equality filters (a list means any of its values)."""
    clauses = [{k: {"$in": v} if isinstance(v, list) else {"$eq": v}} for k, v in filters.items()]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def rows(
    collection: ChromaCollection,
    ids: Sequence[str] | None = None,
    filters: Filters | None = None,
    *,
    vectors: bool = True,
) -> Rows:
    """The stored text, metadata and vector of ``ids`` (all chunks when None) that match ``filters``.

    The vector is None unless ``vectors``.
    """
    found = collection.get(
        ids=list(ids) if ids is not None else None,
        where=where(filters or {}),
        include=["documents", "metadatas", "embeddings"] if vectors else ["documents", "metadatas"],
    )
    return _rows(found)


def _where_outside(filters: Filters, exclude_documents: Sequence[str]) -> Where | None:
    clauses: list[dict[str, Any]] = [clause] if (clause := where(filters)) else []
    if exclude_documents:
        clauses.append({"document_id": {"$nin": list(exclude_documents)}})
    return cast(Where, clauses[0] if len(clauses) == 1 else {"$and": clauses}) if clauses else None


def nearest(
    collection: ChromaCollection,
    vector: Sequence[float],
    n: int,
    filters: Filters,
    exclude_documents: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """The ``n`` chunks nearest to ``vector`` that match ``filters``, outside ``exclude_documents``: (id, distance).

    Nearest first; ids and distances only (no text, metadata or vector is read). The same
    search LlamaIndex's Chroma store runs (it asks for texts and metadata too).
    """
    condition = _where_outside(filters, exclude_documents)
    found = collection.query(query_embeddings=list(vector), n_results=n, where=condition, include=["distances"])
    distances = found["distances"][0] if found["distances"] else []
    return list(zip(found["ids"][0], (float(d) for d in distances), strict=True))


def nearest_rows(
    collection: ChromaCollection,
    vector: Sequence[float],
    n: int,
    filters: Filters,
    exclude_documents: Sequence[str] = (),
) -> list[tuple[str, float, str | None, Mapping[str, Any] | None]]:
    """As ``nearest``, with each chunk's text and metadata read in the same query: (id, distance, text, metadata)."""
    condition = _where_outside(filters, exclude_documents)
    found = collection.query(
        query_embeddings=list(vector), n_results=n, where=condition, include=["distances", "documents", "metadatas"]
    )
    ids = found["ids"][0]
    distances = found["distances"][0] if found["distances"] else []
    texts = found["documents"][0] if found["documents"] else [None] * len(ids)
    metadatas = found["metadatas"][0] if found["metadatas"] else [None] * len(ids)
    return [
        (chunk, float(distance), text, metadata)
        for chunk, distance, text, metadata in zip(ids, distances, texts, metadatas, strict=True)
    ]


def matching_ids(collection: ChromaCollection, ids: Sequence[str], filters: Filters) -> set[str]:
    """Which of ``ids`` are in ``collection`` and match ``filters`` (ids only: nothing else is read)."""
    return set(collection.get(ids=list(ids), where=where(filters), include=[])["ids"])


def _rows(found: GetResult) -> Rows:
    return {
        chunk: (text, meta, emb)
        for chunk, text, meta, emb in zip(
            found["ids"],
            found["documents"] or [],
            found["metadatas"] or [],
            found["embeddings"] if found["embeddings"] is not None else itertools.repeat(None),
            strict=False,
        )
    }


def vector_store(collection: ChromaCollection) -> BasePydanticVectorStore:
    """LlamaIndex's vector store over ``collection`` (it reports similarity as exp(-distance))."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    return ChromaVectorStore(chroma_collection=collection)
