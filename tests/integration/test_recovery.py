"""Lost work comes back: a killed worker under `ragkeep up`, and jobs whose message was lost."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from core import catalog, chroma
from core.db import Database
from core.models import JobKind, utcnow
from core.settings import Settings
from eval import runner
from tests.conftest import DATASETS, EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import ADMIN_KEY, AUTH, Stack, run_stack
from tests.processes import ragkeep_up
from workers.client import TaskClient
from workers.names import TaskName

pytestmark = pytest.mark.integration


# ------------------------------------------------------------ a killed worker


def _abstracts(count: int) -> list[tuple[str, bytes]]:
    with (DATASETS / "beir-scifact" / "corpus.jsonl").open() as lines:
        corpus = [json.loads(line) for line in itertools.islice(lines, count)]
    return [(f"{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()) for d in corpus]


def _worker_main(up: subprocess.Popen[bytes]) -> psutil.Process | None:
    """The Celery worker's main process among `ragkeep up`'s children (not its pool, not the OCR worker)."""
    for child in psutil.Process(up.pid).children():
        try:
            cmdline = child.cmdline()
            ocr_only = "-Q" in cmdline and cmdline[cmdline.index("-Q") + 1].split(",")[-1].endswith("ocr")
            if "worker" in cmdline and not ocr_only and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`ragkeep up` on the embedded default (SQLite broker, Chroma child), with a quick reconciler."""
    quick = {
        "RAGKEEP_ADMIN_API_KEY": ADMIN_KEY,
        "RAGKEEP_WORKER__STUCK_AFTER_S": "10",
        "RAGKEEP_WORKER__RECONCILE_INTERVAL_S": "5",
    }
    with ragkeep_up(tmp_path, quick) as running:
        yield running.process, running.url, running.log


def _kill_worker(up: subprocess.Popen[bytes]) -> int:
    """``kill -9`` the worker's main process (its pool dies with it); returns its pid."""
    worker = _worker_main(up)
    assert worker is not None
    pool = worker.children()
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    _, alive = psutil.wait_procs(pool, timeout=10)
    assert not alive, "the pool outlived the worker's main process"
    return worker.pid


def _wait_running(http: httpx.Client, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while http.get(f"/jobs/{job_id}").json()["status"] == "queued":
        assert time.monotonic() < deadline, f"job {job_id} did not start"
        time.sleep(0.02)


def _chunks_by_file(http: httpx.Client, collection: str) -> dict[str, int]:
    items = http.get(f"/collections/{collection}/documents", params={"limit": 100}).json()["items"]
    return {d["filename"]: d["chunk_count"] for d in items if d["status"] == "ready"}


@pytest.mark.slow  # about 3 minutes on 2 cores: four parses of the files, two worker restarts
def test_ragkeep_up_restarts_a_killed_worker_and_its_jobs_complete(
    up: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    """`kill -9` of the worker under `ragkeep up` stopped the API, Chroma and beat too
    ("worker exited with code -9; stopping ragkeep"), and nothing finished its jobs."""
    process, url, log_path = up
    files = _abstracts(12)
    small_chunks = {"ingestion": {"max_characters": 300}}
    with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
        s = Stack(url, "", log_path.parent / "data", log_path.parent / "netguard.log", http, {})
        # What the interrupted jobs must end with: the same files, parsed and built undisturbed.
        assert http.post("/collections", json={"name": "control"}).status_code == 201
        s.wait_job(s.upload("control", files)["job_id"])
        expected_v1 = s.wait_live("control", 1)["chunk_count"]
        expected_files = _chunks_by_file(http, "control")
        assert http.patch("/collections/control", json={"config": small_chunks}).status_code == 200
        s.wait_job(http.post("/collections/control/versions").json()["job_id"])
        expected_v2 = http.get("/collections/control/versions/2").json()["chunk_count"]
        assert len(expected_files) == len(files) and expected_v2 > expected_v1

        # 1. The worker dies while it parses the upload: every file is parsed once, v1 is built.
        assert http.post("/collections", json={"name": "survivor"}).status_code == 201
        ingest_id = s.upload("survivor", files)["job_id"]
        _wait_running(http, ingest_id)
        first = _kill_worker(process)
        job = http.get(f"/jobs/{ingest_id}").json()
        assert job["status"] == "running", f"the upload was not caught mid-way: {job}"
        assert http.get("/healthz").status_code == 200
        assert s.wait_job(ingest_id)["status"] == "succeeded"
        v1 = s.wait_live("survivor", 1)
        assert v1["state"] == "live" and v1["chunk_count"] == expected_v1, (v1, expected_v1)
        assert _chunks_by_file(http, "survivor") == expected_files

        # 2. The worker dies while it builds v2: the API answers from v1 all along, v2 is built once.
        assert http.patch("/collections/survivor", json={"config": small_chunks}).status_code == 200
        build_id = http.post("/collections/survivor/versions").json()["job_id"]
        _wait_running(http, build_id)
        second = _kill_worker(process)
        job = http.get(f"/jobs/{build_id}").json()
        assert job["status"] == "running", f"the build was not caught mid-way (make it bigger): {job}"
        body = {"collection": "survivor", "question": "What does the immune system do?", "mode": "retrieve"}
        answered, deadline = 0, time.monotonic() + 180
        while (job := http.get(f"/jobs/{build_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, f"the killed build did not finish: {job}"
            assert process.poll() is None, log_path.read_text()[-3000:]
            response = http.post("/query", json=body)
            # v1, or v2 once it is live: the build publishes v2 a moment before it marks its job succeeded.
            assert response.status_code == 200 and response.json()["version"] in (1, 2), response.text
            if response.json()["version"] == 2:
                assert http.get("/collections/survivor/versions/2").json()["state"] == "live", response.text
            answered += 1
            time.sleep(0.2)
        restarted = _worker_main(process)

        assert job["status"] == "succeeded" and job["attempts"] >= 2, job
        v2 = http.get("/collections/survivor/versions/2").json()
        assert v2["state"] == "live" and v2["chunk_count"] == expected_v2, (v2, expected_v2)
        stored = chroma.connect(f"http://127.0.0.1:{_chroma_port(process)}")
        assert stored.get_collection(v2["chroma_collection"]).count() == expected_v2, "no chunk lost or doubled"
        assert http.post("/query", json=body).json()["version"] == 2
    printed = log_path.read_text()
    assert "worker exited with code -9; restarting it in 1 s (restart 1 of" in printed, printed[-3000:]
    assert "worker exited with code -9; restarting it in 2 s (restart 2 of" in printed, printed[-3000:]
    assert "stopping ragkeep" not in printed
    assert restarted is not None and restarted.pid not in (first, second)
    assert answered > 0


def _chroma_port(up: subprocess.Popen[bytes]) -> int:
    for child in psutil.Process(up.pid).children():
        cmdline = child.cmdline()
        if "run" in cmdline and "--port" in cmdline and any(part.endswith("chroma") for part in cmdline):
            return int(cmdline[cmdline.index("--port") + 1])
    raise AssertionError("no chroma child")


# --------------------------------------------------- jobs whose message was lost


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[Stack]:
    yield from run_stack(
        tmp_path_factory.mktemp("recovery-stack"),
        chroma_server,
        {"RAGKEEP_REDIS_URL": REDIS_URL, "RAGKEEP_EVAL__BOOTSTRAP_SAMPLES": "100"},
    )


GOLDEN = [
    {
        "question": "Which animals are the best?",
        "reference_answer": "Dogs are the best.",
        "reference_contexts": ["Dogs are the best"],
    },
    {
        "question": "Where is the document from?",
        "reference_answer": "Doylestown, PA 18901.",
        "reference_contexts": ["Doylestown, PA 18901"],
    },
]


def test_reconciler_resends_lost_evaluation_and_report_jobs(stack: Stack) -> None:
    """The reconciler re-sent only ingest and build jobs: an evaluation or report job whose
    message was lost stayed queued for ever, though the log counted it as re-dispatched."""
    s = stack
    assert s.http.post("/collections", json={"name": "lost-messages"}).status_code == 201  # no owners: no SMTP
    s.wait_job(s.upload("lost-messages", [("fake-text.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes())])["job_id"])
    s.wait_live("lost-messages", 1)
    golden = "\n".join(json.dumps(item) for item in GOLDEN).encode()
    assert s.http.post("/collections/lost-messages/goldensets", files={"file": ("g.jsonl", golden)}).status_code == 201

    settings = Settings(
        data_dir=s.data_dir, redis_url=REDIS_URL, queue_prefix=s.env["RAGKEEP_QUEUE_PREFIX"], chroma_url=s.chroma_url
    )
    db = Database(settings.resolved_database_url)
    with db.session() as session:  # the rows the routes commit, and then the broker never got the messages
        collection = catalog.get_collection(session, "lost-messages")
        run, evaluation = runner.new_run(session, collection, catalog.get_version(session, collection, 1), "manual")
        report = catalog.create_job(session, JobKind.report, collection.id, total=1)
        for job in (evaluation, report):
            job.dispatched_at = job.created_at = utcnow() - timedelta(hours=1)
        run_id, evaluation_id, report_id = run.id, evaluation.id, report.id
    db.dispose()
    assert {s.http.get(f"/jobs/{i}").json()["status"] for i in (evaluation_id, report_id)} == {"queued"}

    client = TaskClient(settings)
    assert client.send(TaskName.reconcile, [])
    client.close()
    done: dict[str, Any] = s.wait_job(evaluation_id, timeout=90)
    assert done["status"] == "succeeded", done
    assert s.http.get(f"/evaluations/{run_id}").json()["status"] == "succeeded"
    sent = s.wait_job(report_id, timeout=30)
    assert sent["status"] == "succeeded" and sent["result"]["status"] == "no_recipients", sent
    assert s.http.get("/collections/lost-messages/reports").json()["total"] == 1
    worker_log = (s.data_dir.parent / "worker.log").read_text()
    assert "reconciler: re-sent: 1 evaluate, 1 report" in worker_log, worker_log[-3000:]
