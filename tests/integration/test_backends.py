"""The same code on other backends: the embedded default (`ragkeep up`) and a PostgreSQL catalog."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import Stack, run_stack
from tests.processes import BIN, child_env, free_port, wait_http

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


def test_ragkeep_up_runs_the_embedded_default_and_stops_cleanly(tmp_path: Path) -> None:
    """`ragkeep up`: SQLite catalog, SQLite broker, Chroma child process, worker, beat, API; Ctrl-C stops all."""
    api_port, chroma_port = free_port(), free_port()
    env = child_env(
        {
            "RAGKEEP_DATA_DIR": str(tmp_path / "data"),
            "RAGKEEP_CHROMA_PORT": str(chroma_port),
            "RAGKEEP_WORKER__BUILD_DEBOUNCE_S": "0.5",
            "RAGKEEP_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        }
    )
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [str(BIN / "ragkeep"), "up", "--port", str(api_port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_http(f"{url}/healthz", up)
        printed = (tmp_path / "up.log").read_text()
        match = re.search(r"\n    (rk_[A-Za-z0-9_-]{40,})\n", printed)
        assert match, f"ragkeep up printed no admin key:\n{printed[-2000:]}"
        key = match.group(1)
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            assert anonymous.get("/collections").status_code == 401
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
            assert http.get("/readyz").json()["checks"] == {
                "catalog": "ok",
                "broker": "ok",
                "chroma": "ok",
                "blobs": "ok",
            }
            _upload_and_replace(
                Stack(url, f"http://127.0.0.1:{chroma_port}", tmp_path / "data", tmp_path / "netguard.log", http, env),
                "embedded-kb",
            )
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 4  # chroma, worker (+ its pool), beat, api
        assert (tmp_path / "data" / "broker.sqlite").exists() and (tmp_path / "data" / "catalog.sqlite").exists()
        assert any((tmp_path / "data" / "chroma").iterdir())
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=90)
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "children left running"
    assert not (tmp_path / "netguard.log").exists(), (tmp_path / "netguard.log").read_text()
    assert "Traceback" not in (tmp_path / "up.log").read_text()
