"""What the on-call engineer sees: worker and API metrics after a scripted workload, and JSON logs
in which one request id follows an upload from the API into every task it caused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import DATASETS, EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import Stack, run_stack
from tests.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[tuple[Stack, str]]:
    port = free_port()
    env = {"RAGKEEP_REDIS_URL": REDIS_URL, "RAGKEEP_WORKER__METRICS_PORT": str(port), "RAGKEEP_LOG_FORMAT": "json"}
    for stack in run_stack(tmp_path_factory.mktemp("ops-stack"), chroma_server, env):
        yield stack, f"http://127.0.0.1:{port}/metrics"


def _value(scraped: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (labels in any order)."""
    for line in scraped.splitlines():
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"{name}{labels} not in the scrape")


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_metrics_and_logs_follow_a_scripted_workload(ops: tuple[Stack, str]) -> None:
    s, worker_metrics = ops
    assert s.http.post("/collections", json={"name": "ops"}).status_code == 201
    pdf = DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf"
    uploaded = s.http.post(
        "/collections/ops/documents",
        files=[
            ("files", ("fake-text.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes())),
            ("files", ("simple.docx", (EXAMPLE_DOCS / "simple.docx").read_bytes())),
            ("files", ("cut.pdf", pdf.read_bytes()[:3000])),
        ],
        headers={"X-Request-ID": "ops-upload-1"},
    )
    assert uploaded.status_code == 202 and uploaded.headers["x-request-id"] == "ops-upload-1"
    s.wait_job(uploaded.json()["job_id"])
    assert s.wait_live("ops", 1)["state"] == "live"
    for question in ("What is this about?", "simple", "cows"):
        assert s.http.post("/query", json={"collection": "ops", "question": question, "mode": "retrieve"}).is_success
    generated = s.http.get("/collections/ops").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    hostile = s.http.get("/collections/ops", headers={"X-Request-ID": 'bad id; "quoted" ' + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"]), "untrusted ids are replaced"

    # Worker metrics: exactly what was done.
    documents = s.http.get("/collections/ops/documents").json()["items"]
    chunks = sum(d["chunk_count"] or 0 for d in documents if d["status"] == "ready")
    scraped = httpx.get(worker_metrics, timeout=10).text
    assert _value(scraped, "ragkeep_documents_parsed_total", outcome="ready") == 2
    assert _value(scraped, "ragkeep_documents_parsed_total", outcome="failed") == 1
    assert _value(scraped, "ragkeep_chunks_embedded_total") == chunks > 0
    assert _value(scraped, "ragkeep_embedding_seconds_total") > 0
    assert _value(scraped, "ragkeep_version_builds_total", outcome="succeeded") == 1
    assert _value(scraped, "ragkeep_version_build_seconds_count") == 1
    parse = "ingest.parse_document"
    assert _value(scraped, "ragkeep_worker_tasks_total", task=parse, outcome="succeeded") == 3
    assert _value(scraped, "ragkeep_worker_task_seconds_count", task=parse) == 3

    # API metrics: queries and the queues (all drained by now).
    api = httpx.get(f"{s.url}/metrics", timeout=10).text
    assert _value(api, "ragkeep_queries_total", collection="ops", answer_mode="none") == 3
    prefix = s.env["RAGKEEP_QUEUE_PREFIX"]
    for queue in ("ingest", "build", "maintenance", "eval"):
        assert _value(api, "ragkeep_queue_depth", queue=prefix + queue) == 0
    assert _value(api, "ragkeep_http_requests_total", method="POST", route="/query", status="200") == 3

    # Logs: one JSON object per line; the upload's id is on the API's access line and on
    # the worker's lines for each parse and for the build those parses scheduled.
    api_log = _json_lines((s.data_dir.parent / "api.log").read_text())
    access = [e for e in api_log if e.get("logger") == "ragkeep.access" and e.get("request_id") == "ops-upload-1"]
    assert access and access[0]["status"] == 202 and access[0]["route"] == "/collections/{name}/documents"
    worker_log = _json_lines((s.data_dir.parent / "worker.log").read_text())
    traced = [e for e in worker_log if e.get("request_id") == "ops-upload-1"]
    assert {e.get("task") for e in traced} >= {"ingest.parse_document", "ingest.build_version"}, traced
    assert sum(1 for e in traced if e["msg"].startswith("parsed ")) == 2
    assert any("cut.pdf" in e["msg"] or e["level"] == "warning" for e in traced)
    assert any(e["msg"].startswith("built ops v1") for e in traced)
