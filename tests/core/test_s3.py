"""The S3 blob store against a real S3-compatible server (SeaweedFS, started once per session)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core.blobs import LocalBlobStore, open_blob_store, sha256_hex
from core.errors import BlobStoreUnavailable, NotFound
from core.s3 import S3BlobStore, parse_url
from core.settings import BlobSettings, Settings
from tests.processes import free_port
from tests.s3server import S3Server

MiB = 1024 * 1024


def _settings(server: S3Server, bucket: str, **extra: object) -> BlobSettings:
    values: dict[str, object] = {
        "url": f"s3://{bucket}/rk/blobs",
        "endpoint_url": server.endpoint,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "timeout_s": 5,
        **extra,
    }
    return BlobSettings.model_validate(values)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> S3BlobStore:
    return S3BlobStore.from_settings(_settings(s3_server, bucket))


def _keys(server: S3Server, bucket: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_url_names_the_bucket_and_the_prefix() -> None:
    assert parse_url("s3://ragkeep/prod/blobs/") == ("ragkeep", "prod/blobs/")
    assert parse_url("s3://ragkeep") == ("ragkeep", "")
    with pytest.raises(ValueError):
        Settings(blobs={"url": "/mnt/shared/blobs"})


def test_settings_choose_the_backend(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    assert isinstance(open_blob_store(Settings(data_dir=tmp_path)), LocalBlobStore)
    store = open_blob_store(Settings(data_dir=tmp_path, blobs=_settings(s3_server, bucket)))
    assert isinstance(store, S3BlobStore) and store.bucket == bucket and store.prefix == "rk/blobs/"
    store.ping()


def test_put_is_content_addressed_and_idempotent(store: S3BlobStore, s3_server: S3Server, bucket: str) -> None:
    digest = store.put("c1", b"hello")
    assert digest == sha256_hex(b"hello")
    assert store.put("c1", b"hello") == digest
    assert store.get("c1", digest) == b"hello"
    assert store.exists("c1", digest) and not store.exists("c2", digest)
    # The local folder's layout, below the URL's prefix.
    assert _keys(s3_server, bucket) == [f"rk/blobs/c1/{digest[:2]}/{digest}"]
    with pytest.raises(NotFound):
        store.get("c2", digest)


def test_large_blobs_go_up_in_parts_and_leave_no_open_upload(s3_server: S3Server, bucket: str) -> None:
    store = S3BlobStore.from_settings(_settings(s3_server, bucket))
    store.multipart_threshold, store.part_size = 5 * MiB, 5 * MiB
    data = os.urandom(11 * MiB + 7)
    digest = store.put("c1", data)
    assert store.get("c1", digest) == data
    head = s3_server.client().head_object(Bucket=bucket, Key=f"rk/blobs/c1/{digest[:2]}/{digest}")
    assert head["ETag"].strip('"').endswith("-3"), "three parts: a multipart object"
    assert not s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_delete_namespace_removes_exactly_that_collection(store: S3BlobStore, s3_server: S3Server, bucket: str) -> None:
    """More than one DeleteObjects batch (1,000 keys), a neighbour whose id starts the same, an open upload."""
    client = s3_server.client()
    for n in range(1005):
        client.put_object(Bucket=bucket, Key=f"rk/blobs/c1/{n % 256:02x}/{n:064x}", Body=b"x")
    kept = store.put("c10", b"kept")
    other_prefix = store.put("c1", b"x")  # stored once more under its own name
    client.create_multipart_upload(Bucket=bucket, Key="rk/blobs/c1/ab/" + "ab" * 32)
    client.put_object(Bucket=bucket, Key="not-ragkeep/c1/file", Body=b"y")
    store.delete_namespace("c1")
    assert not store.exists("c1", other_prefix)
    assert _keys(s3_server, bucket) == ["not-ragkeep/c1/file", f"rk/blobs/c10/{kept[:2]}/{kept}"]
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    store.delete_namespace("c1")  # nothing left: a no-op
    with pytest.raises(ValueError):
        store.delete_namespace("../c10")


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB], ids=["single-put", "multipart"])
def test_a_concurrent_reader_never_sees_a_partial_blob(s3_server: S3Server, bucket: str, size: int) -> None:
    writer = S3BlobStore.from_settings(_settings(s3_server, bucket))
    writer.multipart_threshold, writer.part_size = 5 * MiB, 5 * MiB
    reader = S3BlobStore.from_settings(_settings(s3_server, bucket))
    data = os.urandom(size)
    digest = sha256_hex(data)
    seen: list[str] = []
    watching, written = threading.Event(), threading.Event()

    def read() -> None:
        while True:
            try:
                got = reader.get("c1", digest)
            except NotFound:
                seen.append("absent")
                watching.set()
                continue
            except BlobStoreUnavailable as exc:  # what a partial body would give: a sha256 mismatch
                seen.append(f"partial: {exc}")
                return
            seen.append("whole" if got == data else f"partial {len(got)}")
            if written.is_set():
                return

    thread = threading.Thread(target=read)
    thread.start()
    try:
        assert watching.wait(30)
        writer.put("c1", data)
    finally:
        written.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert set(seen) <= {"absent", "whole"}, [s for s in seen if s.startswith("partial")]
    assert seen[0] == "absent" and seen[-1] == "whole", "the reader watched the write happen"


def test_an_altered_object_is_refused_on_read(store: S3BlobStore, s3_server: S3Server, bucket: str) -> None:
    digest = store.put("c1", b"original bytes")
    s3_server.client().put_object(Bucket=bucket, Key=f"rk/blobs/c1/{digest[:2]}/{digest}", Body=b"other bytes")
    with pytest.raises(BlobStoreUnavailable, match="does not match its sha256"):
        store.get("c1", digest)


def test_wrong_credentials_are_a_clear_error(s3_server: S3Server, bucket: str) -> None:
    store = S3BlobStore.from_settings(_settings(s3_server, bucket, access_key_id="not-a-key"))
    for call in (lambda: store.put("c1", b"x"), lambda: store.get("c1", "a" * 64), store.ping):
        with pytest.raises(BlobStoreUnavailable, match="refused ragkeep's credentials") as raised:
            call()
        assert raised.value.status_code == 503 and f"s3://{bucket}/rk/blobs" in raised.value.detail


def test_a_missing_bucket_is_a_clear_error(s3_server: S3Server) -> None:
    store = S3BlobStore.from_settings(_settings(s3_server, "no-such-bucket-here"))
    with pytest.raises(BlobStoreUnavailable, match="'no-such-bucket-here' does not exist"):
        store.put("c1", b"x")
    with pytest.raises(BlobStoreUnavailable, match="'no-such-bucket-here' does not exist"):
        store.ping()


def test_an_unreachable_store_is_a_clear_error(s3_server: S3Server) -> None:
    nobody = s3_server.__class__(f"http://127.0.0.1:{free_port()}")
    store = S3BlobStore.from_settings(_settings(nobody, "bucket", timeout_s=1))
    with pytest.raises(BlobStoreUnavailable, match="unreachable") as raised:
        store.get("c1", "a" * 64)
    assert raised.value.retry_after > 0


def test_the_test_store_starts_again_when_a_port_it_chose_was_taken_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ports are chosen free and bound a moment later; another process may take one in between."""
    import socket

    import tests.s3server as s3server

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    calls = iter(range(1000))
    monkeypatch.setattr(s3server, "free_port", lambda: taken.getsockname()[1] if next(calls) == 6 else free_port())
    try:
        process, server = s3server.start_seaweedfs(tmp_path)
        try:
            assert server.client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert "address already in use" in (tmp_path / "attempt-1" / "weed.log").read_text()
        finally:
            process.kill()
            process.wait()
    finally:
        taken.close()
