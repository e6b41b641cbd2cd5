"""Chroma access: the HTTP client, version collection naming, create and drop.

API and workers always talk to a Chroma *server* (``chroma run``): a PersistentClient
shared by several processes does not see other processes' new vectors in queries.
Collections are created without an embedding function so that Chroma never fetches
its default ONNX model; ragkeep always passes embeddings itself.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def version_collection_name(collection: str, number: int) -> str:
    """``rk_<collection>_v<N>``: the physical Chroma collection of one version."""
    name = f"rk_{collection}_v{number}"
    if not _NAME_OK.match(name):
        raise ValueError(f"invalid Chroma collection name {name!r}")
    return name


def connect(url: str) -> ClientAPI:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"RAGKEEP_CHROMA_URL must be http(s)://host:port, got {url!r}")
    return chromadb.HttpClient(
        host=parsed.hostname,
        port=parsed.port or (443 if parsed.scheme == "https" else 80),
        ssl=parsed.scheme == "https",
        settings=ChromaSettings(anonymized_telemetry=False),
    )


def heartbeat(client: ClientAPI) -> None:
    client.heartbeat()


def fresh_collection(client: ClientAPI, name: str) -> Collection:
    """An empty collection named ``name`` (an older one of that name is removed first)."""
    drop_collection(client, name)
    return client.create_collection(name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)


def get_collection(client: ClientAPI, name: str) -> Collection | None:
    try:
        return client.get_collection(name, embedding_function=None)
    except NotFoundError:
        return None


def drop_collection(client: ClientAPI, name: str) -> bool:
    try:
        client.delete_collection(name)
        return True
    except NotFoundError:
        return False


def max_batch_size(client: ClientAPI) -> int:
    return int(client.get_max_batch_size())


def collection_stats(collection: Collection) -> dict[str, Any]:
    return {"name": collection.name, "count": collection.count()}
