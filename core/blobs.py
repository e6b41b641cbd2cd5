"""Content-addressed store for uploaded bytes: ``<root>/<collection id>/<sha[:2]>/<sha>``.

One namespace per collection, so that deleting a collection removes exactly its files.
Writes go to a temporary file and are renamed into place, so a reader never sees a
half-written blob and two writers of the same content do not conflict.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from core.errors import NotFound


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, namespace: str, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / namespace / sha256[:2] / sha256

    def put(self, namespace: str, data: bytes) -> str:
        """Store ``data`` and return its sha256; storing the same bytes twice is a no-op."""
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
        shutil.rmtree(self.root / namespace, ignore_errors=True)
