"""Limits and hostile input at the API: each gets a clear 4xx and nothing else changes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app

ADMIN = {"Authorization": "Bearer rk_admin-key-for-limit-tests"}


def _client(tmp_path: Path, chroma_server: str, **limits: Any) -> TestClient:
    settings = Settings(
        data_dir=tmp_path,
        chroma_url=chroma_server,
        admin_api_key=ADMIN["Authorization"][7:],
        query={"warm_on_start": False},
        limits=limits,
        max_upload_mb=2,
    )
    return TestClient(create_app(settings), headers=ADMIN)


@pytest.fixture
def client(tmp_path: Path, chroma_server: str) -> Iterator[TestClient]:
    with _client(tmp_path, chroma_server, max_unpacked_mb=5, max_pending_mb_per_collection=1) as test_client:
        assert test_client.post("/collections", json={"name": "kb-one"}).status_code == 201
        yield test_client


def _docx_bomb(unpacked_mb: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * unpacked_mb * 1024 * 1024)
    return buffer.getvalue()


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, chroma_server: str) -> None:
    with _client(tmp_path, chroma_server, requests_per_minute=3) as limited:
        codes = [limited.get("/collections").status_code for _ in range(4)]
        refused = limited.get("/collections")
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    assert refused.json()["error"] == "TooManyRequests" and 1 <= int(refused.headers["retry-after"]) <= 61


def test_zip_bomb_disguised_as_docx_is_refused_unopened(client: TestClient) -> None:
    bomb = _docx_bomb(20)
    assert len(bomb) < 100 * 1024
    response = client.post("/collections/kb-one/documents", files=[("files", ("report.docx", bomb))])
    assert response.status_code == 422 and "ZIP bomb" in response.json()["detail"]
    assert client.get("/collections/kb-one/documents").json()["total"] == 0


def test_pending_bytes_per_collection_are_bounded(client: TestClient) -> None:
    chunk = b"plain words and more words\n" * 25_000  # ~0.65 MiB
    first = client.post("/collections/kb-one/documents", files=[("files", ("a.txt", chunk))])
    assert first.status_code == 202  # no worker runs here: it stays queued
    second = client.post("/collections/kb-one/documents", files=[("files", ("b.txt", chunk))])
    assert second.status_code == 429 and "waiting to be parsed" in second.json()["detail"]
    assert "retry-after" in second.headers
    assert client.get("/collections/kb-one/documents").json()["total"] == 1


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("notes-utf16.txt", "Résumé of the policy.\n".encode("utf-16")),
        ("shift-jis.txt", "就業規則の概要です。".encode("shift_jis") * 10),
        ("cp1252.txt", "Café menu \u2013 naïve prices".encode("cp1252") * 5),
        ("one-line.txt", b"word " * 200_000),
        ("no-extension", b"Just text without an extension."),
        ("x" * 200 + ".md", b"# Title\n\nBody."),
    ],
)
def test_odd_but_valid_files_are_accepted(client: TestClient, filename: str, data: bytes) -> None:
    response = client.post("/collections/kb-one/documents", files=[("files", (filename, data))])
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("filename", "status"),
    [("a\x00b.txt", 202), ("../../../etc/passwd", 202), ("..", 422), ("/", 422), ("y" * 300 + ".txt", 422)],
)
def test_hostile_filenames_are_cleaned_or_refused(client: TestClient, filename: str, status: int) -> None:
    response = client.post("/collections/kb-one/documents", files=[("files", (filename, b"some text"))])
    assert response.status_code == status, response.text
    if status == 202:
        stored = response.json()["documents"][0]["filename"]
        assert "/" not in stored and "\x00" not in stored and ".." not in stored


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"collection": "kb-one"}',
        b'{"collection": "kb-one", "question": 5}',
        b'{"collection": "kb-one", "question": "x", "unknown": 1}',
        b'{"collection": "kb-one", "question": "' + b"q" * 5000 + b'"}',
        b'{"collection": "kb-one", "question": "x", "top_k": 10000}',
    ],
)
def test_malformed_query_bodies_are_422(client: TestClient, body: bytes) -> None:
    response = client.post("/query", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "InvalidInput"


def test_rate_limit_is_shared_through_redis_by_every_api_process() -> None:
    import uuid

    from core.errors import TooManyRequests
    from core.ratelimit import RateLimiter
    from tests.conftest import REDIS_URL

    key = f"test-{uuid.uuid4().hex}"
    first, second = RateLimiter(3, REDIS_URL), RateLimiter(3, REDIS_URL)  # two API processes
    first.check(key)
    second.check(key)
    first.check(key)
    with pytest.raises(TooManyRequests) as refused:
        second.check(key)
    assert 1 <= refused.value.retry_after <= 61
    RateLimiter(3, REDIS_URL).check(f"{key}-other")  # other keys have their own budget
    # A Redis count is a round trip: the API checks it in its thread pool, not on the event loop.
    assert first.does_io and not RateLimiter(3, None).does_io and not RateLimiter(0, REDIS_URL).does_io
