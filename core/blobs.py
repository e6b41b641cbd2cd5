"""Content-addressed store for uploaded bytes: ``<collection id>/<sha[:2]>/<sha>`` under a root.

Two backends keep that one layout:

- ``LocalBlobStore``, the embedded default: a folder (``<data_dir>/blobs``). Writes go to a
  temporary file that is renamed into place, so a reader never sees a half-written blob.
- ``core.s3.S3BlobStore``: an S3-compatible bucket and prefix (``RAGKEEP_BLOBS__URL=s3://...``),
  for API and worker processes on different hosts. An object appears whole or not at all.

One namespace per collection, so that deleting a collection removes exactly its files. Two
writers of the same content write the same bytes under the same name, so they never conflict.
The layout is the same in both, so ``aws s3 sync <data_dir>/blobs s3://bucket/prefix`` moves an
embedded installation's blobs to a bucket.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from core.errors import NotFound
from core.settings import Settings

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_name(namespace: str, sha256: str) -> str:
    """The blob's path below the store's root, ``<namespace>/<sha[:2]>/<sha>``; refuses anything else."""
    if not _NAMESPACE.match(namespace):
        raise ValueError(f"not a blob namespace: {namespace!r}")
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{namespace}/{sha256[:2]}/{sha256}"


def namespace_prefix(namespace: str) -> str:
    """``<namespace>/``: everything of one collection, and nothing of a collection whose id starts alike."""
    if not _NAMESPACE.match(namespace):
        raise ValueError(f"not a blob namespace: {namespace!r}")
    return f"{namespace}/"


class BlobStore(Protocol):
    """What the API and the workers need of a blob store."""

    def put(self, namespace: str, data: bytes) -> str:
        """Store ``data`` and return its sha256; storing the same bytes twice is a no-op."""
        ...

    def get(self, namespace: str, sha256: str) -> bytes:
        """The blob's bytes; ``NotFound`` when it is missing."""
        ...

    def exists(self, namespace: str, sha256: str) -> bool: ...

    def delete_namespace(self, namespace: str) -> None:
        """Remove every blob of ``namespace`` (a collection being deleted)."""
        ...

    def ping(self) -> None:
        """Raise when the store cannot be used (the readiness probe)."""
        ...


class LocalBlobStore:
    """A folder on this host: the embedded default."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, namespace: str, sha256: str) -> Path:
        return self.root / blob_name(namespace, sha256)

    def put(self, namespace: str, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self._path(namespace, digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, namespace: str, sha256: str) -> bytes:
        try:
            return self._path(namespace, sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} is missing from the blob store") from None

    def exists(self, namespace: str, sha256: str) -> bool:
        return self._path(namespace, sha256).exists()

    def delete_namespace(self, namespace: str) -> None:
        shutil.rmtree(self.root / namespace_prefix(namespace), ignore_errors=True)

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


def open_blob_store(settings: Settings) -> BlobStore:
    """The store the settings name: the bucket of ``blobs.url``, else the local folder."""
    if settings.blobs.url is None:
        return LocalBlobStore(settings.blob_dir)
    from core.s3 import S3BlobStore  # boto3 loads only where a bucket is configured

    return S3BlobStore.from_settings(settings.blobs)
