"""The same code on other backends: the embedded default (`ragkeep up`) and a PostgreSQL catalog."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from bench.stack import OCR_QUEUE
from tests.conftest import EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import Stack, run_stack
from tests.processes import ragkeep_up

pytestmark = pytest.mark.integration


def _upload_and_replace(stack: Stack, name: str) -> None:
    assert stack.http.post("/collections", json={"name": name}).status_code == 201
    first = stack.upload(
        name,
        [
            ("a.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes()),
            ("b.docx", (EXAMPLE_DOCS / "simple.docx").read_bytes()),
        ],
    )
    assert stack.wait_job(first["job_id"])["status"] == "succeeded"
    v1 = stack.wait_live(name, 1)
    assert v1["state"] == "live" and v1["document_count"] == 2 and v1["chunk_count"] > 0
    second = stack.upload(name, [("b.docx", (EXAMPLE_DOCS / "fake-doc-emphasized-text.docx").read_bytes())])
    stack.wait_job(second["job_id"])
    v2 = stack.wait_live(name, 2)
    doc = stack.http.get(f"/collections/{name}/documents/{second['documents'][0]['id']}").json()
    assert v2["state"] == "live" and v2["embedded_chunk_count"] == doc["chunk_count"]


@pytest.fixture(scope="module")
def postgres_stack(tmp_path_factory: pytest.TempPathFactory, chroma_server: str, postgres_url: str) -> Iterator[Stack]:
    yield from run_stack(
        tmp_path_factory.mktemp("pg-stack"),
        chroma_server,
        {"RAGKEEP_REDIS_URL": REDIS_URL, "RAGKEEP_DATABASE_URL": postgres_url},
    )


@pytest.mark.postgres
def test_postgresql_catalog_behaves_like_sqlite(postgres_stack: Stack) -> None:
    _upload_and_replace(postgres_stack, "pg-kb")


def _loads_the_model(process: psutil.Process) -> bool:
    command = " ".join(process.cmdline())
    return "uvicorn" in command or ("celery" in command and " worker" in command)


def _wait_for_parse_helpers(root: int) -> None:
    """The ingest worker's task processes start their parse helpers as they start, before any document
    arrives; the OCR worker's process starts its own with its first scan (no idle memory where scans are rare)."""
    deadline = time.monotonic() + 120
    while True:
        helpers: dict[bool, list[int]] = {True: [], False: []}  # by OCR worker or not: helpers of each process
        for process in psutil.Process(root).children(recursive=True):
            parent = " ".join(process.parent().cmdline()) + " "
            if _loads_the_model(process) and "celery" in parent:
                count = sum("ingest.sandbox" in " ".join(c.cmdline()) for c in process.children())
                helpers[bool(OCR_QUEUE.search(parent))].append(count)
        if helpers[False] == [1, 1] and helpers[True] == [0]:
            return
        assert time.monotonic() < deadline, f"parse helpers of the task processes (OCR worker or not): {helpers}"
        time.sleep(0.5)


def test_ragkeep_up_runs_the_embedded_default_and_stops_cleanly(tmp_path: Path) -> None:
    """`ragkeep up`: SQLite catalog, SQLite broker, Chroma child process, worker, beat, API; Ctrl-C stops all."""
    with ragkeep_up(tmp_path) as up:
        _wait_for_parse_helpers(up.process.pid)
        key = up.admin_key()
        with httpx.Client(base_url=up.url, timeout=30) as anonymous:
            assert anonymous.get("/collections").status_code == 401
        with httpx.Client(base_url=up.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
            assert http.get("/readyz").json()["checks"] == {
                "catalog": "ok",
                "broker": "ok",
                "chroma": "ok",
                "blobs": "ok",
            }
            _upload_and_replace(
                Stack(up.url, up.chroma_url, up.data, tmp_path / "netguard.log", http, up.env), "embedded-kb"
            )
        assert len(psutil.Process(up.process.pid).children(recursive=True)) >= 4  # chroma, worker (+ pool), beat, api
        assert (up.data / "broker.sqlite").exists() and (up.data / "catalog.sqlite").exists()
        assert any((up.data / "chroma").iterdir())
        # `ragkeep up` exported the model's graph once; the API and the workers (Celery's processes) read it,
        # so none of them imports torch. (The parse helpers do: Unstructured imports it.)
        assert sorted(p.name.split("-")[-2] for p in (up.data / "models").iterdir()) == ["float", "int8"]
        embedding = [p for p in psutil.Process(up.process.pid).children(recursive=True) if _loads_the_model(p)]
        assert len(embedding) >= 3  # the API, the worker's processes
        for part in embedding:
            assert not any("libtorch" in m.path for m in part.memory_maps()), part.cmdline()
    assert not (tmp_path / "netguard.log").exists(), (tmp_path / "netguard.log").read_text()
    assert "Traceback" not in (tmp_path / "up.log").read_text()
