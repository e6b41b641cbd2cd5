"""A running ragkeep: real Celery worker and API processes against a real Chroma server."""

from __future__ import annotations

import email
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import REDIS_URL
from tests.processes import free_port, start_api, start_worker, stop

ADMIN_KEY = "rk_test-admin-key-for-integration-tests"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Stack:
    url: str
    chroma_url: str
    data_dir: Path
    netguard_log: Path
    http: httpx.Client
    env: dict[str, str]
    processes: tuple[subprocess.Popen[bytes], ...] = ()

    def check_alive(self) -> None:
        for process in self.processes:
            assert process.poll() is None, f"{process.args} exited with {process.returncode}; see its log"

    def wait_job(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            job: dict[str, Any] = self.http.get(f"/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} did not finish: {job}")

    def wait_live(self, collection: str, number: int, timeout: float = 180) -> dict[str, Any]:
        """Version ``number`` once its build job has finished (published or not, per the policy)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            response = self.http.get(f"/collections/{collection}/versions/{number}")
            if response.status_code == 200 and response.json()["job_id"]:
                self.wait_job(response.json()["job_id"], timeout=max(1.0, deadline - time.monotonic()))
                version: dict[str, Any] = self.http.get(f"/collections/{collection}/versions/{number}").json()
                return version
            time.sleep(0.3)
        raise TimeoutError(f"version {number} of {collection} was not built in {timeout} s")

    def upload(self, collection: str, files: list[tuple[str, bytes]], metadata: str | None = None) -> dict[str, Any]:
        response = self.http.post(
            f"/collections/{collection}/documents",
            files=[("files", (name, data)) for name, data in files],
            data={"metadata": metadata} if metadata else None,
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body


def run_stack(tmp: Path, chroma_url: str, env: dict[str, str]) -> Iterator[Stack]:
    netguard_log = tmp / "netguard.log"
    base = {
        "RAGKEEP_DATA_DIR": str(tmp / "data"),
        "RAGKEEP_CHROMA_URL": chroma_url,
        "RAGKEEP_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:8]}-",
        "RAGKEEP_WORKER__BUILD_DEBOUNCE_S": "1.5",
        "RAGKEEP_WORKER__CONCURRENCY": "2",
        "RAGKEEP_NETGUARD_LOG": str(netguard_log),
        "RAGKEEP_ADMIN_API_KEY": ADMIN_KEY,
        **env,
    }
    worker = start_worker(base, tmp / "worker.log", concurrency=2)
    api, url = start_api(base, tmp / "api.log")
    try:
        with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
            yield Stack(url, chroma_url, tmp / "data", netguard_log, http, base, (worker, api))
    finally:
        stop(api)
        stop(worker, timeout=60)
        for log in ("worker.log", "api.log"):
            text = (tmp / log).read_text(errors="replace")
            assert "Traceback" not in text, f"{log} holds a traceback:\n{text[-6000:]}"
            # No answered query goes missing from the log (a deleted collection's are written first).
            assert "query-log row" not in text, f"{log} lost query-log rows:\n{text[-6000:]}"
    assert not netguard_log.exists(), f"a process tried to reach the internet: {netguard_log.read_text()}"


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[Stack]:
    """Redis broker, SQLite catalog (the production broker with the embedded catalog)."""
    yield from run_stack(tmp_path_factory.mktemp("redis-stack"), chroma_server, {"RAGKEEP_REDIS_URL": REDIS_URL})


REJECTED = "bounce@example.com"  # the test SMTP server refuses this address (to test send failures)


class Mailbox:
    """aiosmtpd handler: keeps every message; refuses ``REJECTED``."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address == REJECTED:
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=default_policy)  # type: ignore[arg-type]
        self.messages.append(message)
        return "250 Message accepted"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) for the module: (its mailbox, its port)."""
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()
