from __future__ import annotations

from pathlib import Path

import pytest

from core.blobs import LocalBlobStore, sha256_hex
from core.errors import NotFound


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest = store.put("c1", b"hello")
    assert digest == sha256_hex(b"hello")
    assert store.put("c1", b"hello") == digest
    assert store.get("c1", digest) == b"hello"
    assert not list(tmp_path.rglob(".upload-*")), "no temporary files are left behind"


def test_namespaces_are_deleted_whole(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    kept, gone = store.put("keep", b"x"), store.put("drop", b"x")
    store.delete_namespace("drop")
    assert store.exists("keep", kept)
    with pytest.raises(NotFound):
        store.get("drop", gone)


def test_rejects_non_digest_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).get("c1", "../../etc/passwd")
