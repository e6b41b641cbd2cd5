"""OCR through the whole service (issue 19): an image and a scanned PDF uploaded over HTTP are
read by the worker of the ``ocr`` queue, and /query finds their text with OCR marked in the citations.

The stack runs two workers as ``ragkeep up`` does: one of every queue but ``ocr`` and one of
``ocr`` only, so the test also shows where each document was parsed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import ADMIN_KEY, AUTH, Stack
from tests.processes import start_api, start_worker, stop
from workers.names import Queue, TaskName

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOGS = ("worker.log", "ocr-worker.log", "api.log")


@pytest.fixture(scope="module")
def ocr_stack(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ocr-stack")
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    env = {
        "RAGKEEP_DATA_DIR": str(tmp / "data"),
        "RAGKEEP_CHROMA_URL": chroma_server,
        "RAGKEEP_REDIS_URL": REDIS_URL,
        "RAGKEEP_QUEUE_PREFIX": prefix,
        "RAGKEEP_WORKER__BUILD_DEBOUNCE_S": "1.5",
        "RAGKEEP_NETGUARD_LOG": str(tmp / "netguard.log"),
        "RAGKEEP_ADMIN_API_KEY": ADMIN_KEY,
        "RAGKEEP_LOG_FORMAT": "text",
    }
    others = ",".join(f"{prefix}{q.value}" for q in Queue if q != Queue.ocr)
    worker = start_worker(env, tmp / "worker.log", concurrency=1, queues=others)
    ocr_worker = start_worker(env, tmp / "ocr-worker.log", concurrency=1, queues=f"{prefix}{Queue.ocr.value}")
    api, url = start_api(env, tmp / "api.log")
    try:
        with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
            yield Stack(url, chroma_server, tmp / "data", tmp / "netguard.log", http, env, (worker, ocr_worker, api))
    finally:
        stop(api)
        stop(worker, timeout=60)
        stop(ocr_worker, timeout=60)
        for log in LOGS:
            text = (tmp / log).read_text(errors="replace")
            assert "Traceback" not in text, f"{log} holds a traceback:\n{text[-6000:]}"
    assert not (tmp / "netguard.log").exists(), (
        f"a process tried to reach the internet: {(tmp / 'netguard.log').read_text()}"
    )


def _query(stack: Stack, question: str) -> list[dict[str, Any]]:
    response = stack.http.post(
        "/query", json={"collection": "scans", "question": question, "top_k": 3, "mode": "retrieve"}
    )
    assert response.status_code == 200, response.text
    citations: list[dict[str, Any]] = response.json()["citations"]
    return citations


def test_image_and_scanned_pdf_are_read_on_the_ocr_queue_and_cited_as_ocr(ocr_stack: Stack) -> None:
    s = ocr_stack
    assert s.http.post("/collections", json={"name": "scans", "owners": ["ops@example.com"]}).status_code == 201
    files = [
        ("DA-1p.png", (EXAMPLE_DOCS / "img" / "DA-1p.png").read_bytes()),
        ("loremipsum-flat.pdf", (EXAMPLE_DOCS / "pdf" / "loremipsum-flat.pdf").read_bytes()),
        ("fake-text.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes()),
    ]
    job = s.wait_job(s.upload("scans", files)["job_id"], timeout=600)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 3, "total": 3}
    assert job["ocr_pages"] == {"done": 2, "total": 2}  # one image, one scanned page; the text file needs none
    documents = {d["filename"]: d["status"] for d in s.http.get("/collections/scans/documents").json()["items"]}
    assert documents == {"DA-1p.png": "ready", "loremipsum-flat.pdf": "ready", "fake-text.txt": "ready"}
    s.wait_live("scans", 1, timeout=300)

    image = _query(s, "tracking the maleficar for days")[0]
    assert image["filename"] == "DA-1p.png" and "maleficar" in image["text"]
    assert image["ocr"] is True and 0.5 < image["ocr_confidence"] <= 1.0 and image["page"] == 1
    scan = _query(s, "Lorem ipsum dolor sit amet, consectetur adipiscing elit")[0]
    assert scan["filename"] == "loremipsum-flat.pdf" and "consectetur adipiscing" in scan["text"]
    assert scan["ocr"] is True and scan["ocr_confidence"] > 0.5 and scan["page"] == 1
    text = next(
        c for c in _query(s, "Hamburgers are delicious and dogs are the best") if c["filename"] == "fake-text.txt"
    )
    assert text["ocr"] is False and text["ocr_confidence"] is None

    # Where each was parsed: the image went straight to the ocr queue; the scanned PDF was
    # parsed for its text layer on the ingest queue and handed over; the text file never left it.
    data = s.data_dir.parent
    ocr_log = (data / "ocr-worker.log").read_text(errors="replace")
    main_log = (data / "worker.log").read_text(errors="replace")
    ran = {name: rf"Task {name.value}\[" for name in (TaskName.ocr_document, TaskName.parse_document)}
    assert len(re.findall(ran[TaskName.ocr_document], ocr_log)) >= 2, ocr_log[-3000:]
    assert not re.search(ran[TaskName.ocr_document], main_log) and not re.search(ran[TaskName.parse_document], ocr_log)
    assert len(re.findall(ran[TaskName.parse_document], main_log)) >= 2, main_log[-3000:]
    assert "sent to the ocr queue" in main_log, main_log[-3000:]
