"""Multi-host rehearsal: API and worker processes that share nothing but the services.

Two API processes and two worker processes (and the one beat), each with its own empty data
folder, as if each ran on a host of its own. What they share is what a deployment shares:
Redis, a PostgreSQL catalog, one Chroma server and an S3-compatible object store (SeaweedFS,
a real one; see tests/s3server.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from core import chroma
from tests.conftest import DATASETS, PG_ADMIN_URL, REDIS_URL
from tests.integration.conftest import ADMIN_KEY, AUTH, Stack
from tests.processes import BIN, child_env, start_api, start_worker, stop
from tests.s3server import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# A Redis database of this test's own (and a queue prefix of its own), so that no other test's
# worker takes its messages and its left-over unacked messages reach nobody else.
REDIS_DB = 13
SMALL_CHUNKS = {"ingestion": {"max_characters": 300}}


@dataclass
class Host:
    name: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database for this test alone."""
    from sqlalchemy import create_engine, text

    name = f"ragkeep_multihost_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _start_beat(host: Host) -> subprocess.Popen[bytes]:
    log = host.log.open("wb")
    return subprocess.Popen(
        [str(BIN / "ragkeep"), "beat"],
        env=child_env(host.env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture
def hosts(
    tmp_path: Path, chroma_server: str, s3_server: S3Server, fresh_postgres: str
) -> Iterator[tuple[dict[str, Host], str]]:
    """api-1, api-2, worker-1, worker-2 and beat, each in a folder of its own; the bucket they share."""
    bucket = s3_server.new_bucket()
    shared = {
        "RAGKEEP_REDIS_URL": f"{REDIS_URL.rsplit('/', 1)[0]}/{REDIS_DB}",
        "RAGKEEP_QUEUE_PREFIX": f"mh{uuid.uuid4().hex[:8]}-",
        "RAGKEEP_DATABASE_URL": fresh_postgres,
        "RAGKEEP_CHROMA_URL": chroma_server,
        **s3_server.env(bucket, prefix="ragkeep"),
        "RAGKEEP_ADMIN_API_KEY": ADMIN_KEY,
        "RAGKEEP_WORKER__CONCURRENCY": "1",
        "RAGKEEP_WORKER__BUILD_DEBOUNCE_S": "0.5",
        # A killed worker's job is taken over after 10 s without a heartbeat (checked every 5 s).
        "RAGKEEP_WORKER__STUCK_AFTER_S": "10",
        "RAGKEEP_WORKER__RECONCILE_INTERVAL_S": "5",
    }
    names = ("api-1", "api-2", "worker-1", "worker-2", "beat")
    machines = {name: Host(name, tmp_path / name) for name in names}
    for host in machines.values():
        host.folder.mkdir()
        host.env = {
            **shared,
            "RAGKEEP_DATA_DIR": str(host.data),
            "RAGKEEP_NETGUARD_LOG": str(host.folder / "netguard.log"),
        }
    try:
        # The first API migrates the empty catalog; everything else starts against it.
        for name in ("api-1", "api-2"):
            host = machines[name]
            host.process, host.url = start_api(host.env, host.log)
        for name in ("worker-1", "worker-2"):
            machines[name].process = start_worker(machines[name].env, machines[name].log)
        machines["beat"].process = _start_beat(machines["beat"])
        yield machines, bucket
    finally:
        for host in machines.values():
            if host.process is not None:
                stop(host.process, timeout=60)
        for host in machines.values():
            guard = host.folder / "netguard.log"
            assert not guard.exists(), f"{host.name} tried to reach the internet: {guard.read_text()}"


def _abstracts(count: int) -> list[tuple[str, bytes]]:
    with (DATASETS / "beir-scifact" / "corpus.jsonl").open() as lines:
        corpus = [json.loads(line) for line in itertools.islice(lines, count)]
    return [(f"{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()) for d in corpus]


def _chunks_by_file(http: httpx.Client, collection: str) -> dict[str, int]:
    items = http.get(f"/collections/{collection}/documents", params={"limit": 100}).json()["items"]
    return {d["filename"]: d["chunk_count"] for d in items if d["status"] == "ready"}


def _stored_chunks_by_file(chroma_url: str, name: str) -> dict[str, int]:
    """Chunks per file in a version's Chroma collection, as stored."""
    stored = chroma.connect(chroma_url).get_collection(name).get(include=["metadatas"])
    return dict(Counter(str(m["filename"]) for m in stored["metadatas"] or []))


def _namespaces(keys: list[str]) -> dict[str, set[str]]:
    """The blob names under each namespace of ``ragkeep/<namespace>/<sha[:2]>/<sha>``."""
    found: dict[str, set[str]] = {}
    for key in keys:
        _, namespace, _, sha = key.split("/")
        found.setdefault(namespace, set()).add(sha)
    return found


def _sha(file: tuple[str, bytes]) -> str:
    return hashlib.sha256(file[1]).hexdigest()


def _builds_received(host: Host) -> int:
    return host.log.read_text(errors="replace").count("ingest.build_version[")


def _kill_group(host: Host) -> None:
    """``kill -9`` the worker's main process, its pool and its parser: a host that went away."""
    assert host.process is not None
    os.killpg(host.process.pid, signal.SIGKILL)
    host.process.wait(timeout=10)


def _blob_keys(server: S3Server, bucket: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.mark.slow  # about 3 minutes on 2 shared cores: two worker start-ups, three parses of 16 abstracts
def test_two_apis_and_two_workers_share_only_their_services(
    hosts: tuple[dict[str, Host], str], chroma_server: str, s3_server: S3Server
) -> None:
    machines, bucket = hosts
    api_1, api_2 = machines["api-1"], machines["api-2"]
    workers = [machines["worker-1"], machines["worker-2"]]
    files = _abstracts(16)
    # A long client timeout: an API's first query may wait for its embedding model (40 s seen on 2 busy cores).
    with (
        httpx.Client(base_url=api_1.url, timeout=120, headers=AUTH) as one,
        httpx.Client(base_url=api_2.url, timeout=120, headers=AUTH) as two,
    ):
        first, second = (
            Stack(api_1.url, chroma_server, api_1.data, api_1.folder, one, {}),
            Stack(api_2.url, chroma_server, api_2.data, api_2.folder, two, {}),
        )
        # What the interrupted build must end with: the same files parsed and built undisturbed.
        assert one.post("/collections", json={"name": "control", "config": SMALL_CHUNKS}).status_code == 201
        second.wait_job(first.upload("control", files)["job_id"], timeout=240)
        expected = second.wait_live("control", 1, timeout=240)
        assert len(_chunks_by_file(two, "control")) == len(files) and expected["state"] == "live"

        # Upload through API 1, the live version seen and queried through API 2.
        assert one.post("/collections", json={"name": "handbook"}).status_code == 201
        assert second.wait_job(first.upload("handbook", files)["job_id"], timeout=240)["status"] == "succeeded"
        v1 = second.wait_live("handbook", 1, timeout=240)
        assert v1["state"] == "live" and v1["document_count"] == len(files)
        body = {"collection": "handbook", "question": "What does the immune system do?", "mode": "retrieve"}
        answer = two.post("/query", json=body)
        assert answer.status_code == 200 and answer.json()["version"] == 1, answer.text
        assert {c["filename"] for c in answer.json()["citations"]} <= dict(files).keys()

        # A config change rebuilds every chunk in the build; the worker that runs it dies.
        received = [_builds_received(w) for w in workers]
        assert one.patch("/collections/handbook", json={"config": SMALL_CHUNKS}).status_code == 200
        build_id = one.post("/collections/handbook/versions").json()["job_id"]
        deadline = time.monotonic() + 120
        while (job := two.get(f"/jobs/{build_id}").json())["status"] == "queued":
            assert time.monotonic() < deadline, f"the build did not start: {job}"
            time.sleep(0.02)
        running = [w for w, before in zip(workers, received, strict=True) if _builds_received(w) > before]
        assert len(running) == 1, "exactly one worker took the build"
        victim, survivor = running[0], next(w for w in workers if w is not running[0])
        _kill_group(victim)
        job = two.get(f"/jobs/{build_id}").json()
        assert job["status"] == "running", f"the build was not caught mid-way (make it bigger): {job}"

        # The survivor takes the job over (beat's reconciler); API 2 answers from v1 meanwhile.
        deadline = time.monotonic() + 180
        while (job := two.get(f"/jobs/{build_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, f"the killed build did not finish: {job}"
            assert survivor.process is not None and survivor.process.poll() is None, survivor.log.read_text()[-3000:]
            response = two.post("/query", json=body)
            # v1, or v2 once it is live: the build publishes v2 a moment before it marks its job succeeded.
            assert response.status_code == 200 and response.json()["version"] in (1, 2), response.text
            if response.json()["version"] == 2:
                assert two.get("/collections/handbook/versions/2").json()["state"] == "live", response.text
            time.sleep(0.5)
        assert job["status"] == "succeeded" and job["attempts"] >= 2, job
        assert _builds_received(survivor) > received[workers.index(survivor)]

        v2 = two.get("/collections/handbook/versions/2").json()
        assert v2["state"] == "live" and v2["chunk_count"] == expected["chunk_count"], (v2, expected)
        built = _stored_chunks_by_file(chroma_server, v2["chroma_collection"])
        assert built == _stored_chunks_by_file(chroma_server, expected["chroma_collection"]), "no chunk lost or doubled"
        assert sum(built.values()) == expected["chunk_count"]
        answer = two.post("/query", json={**body, "mode": "retrieve"})
        assert answer.json()["version"] == 2 and answer.json()["citations"], answer.text
        assert one.post("/query", json=body).json()["version"] == 2

        # Deleting a collection through API 2 removes its blobs from the bucket, and only its: both
        # collections hold the same files, each in its own namespace (``ragkeep/<collection id>/``).
        before = _namespaces(_blob_keys(s3_server, bucket))
        assert len(before) == 2 and all({_sha(f) for f in files} <= shas for shas in before.values()), before
        assert two.delete("/collections/control").status_code == 204
        after = _namespaces(_blob_keys(s3_server, bucket))
        assert len(after) == 1 and after.items() <= before.items(), after
        assert two.post("/query", json={**body, "mode": "retrieve"}).json()["version"] == 2

    # Nothing went to a local folder: every host's data folder holds no blob.
    for host in machines.values():
        assert not (host.data / "blobs").exists(), f"{host.name} wrote blobs locally"
    for host in (api_1, api_2, survivor, machines["beat"]):
        text = host.log.read_text(errors="replace")
        assert "Traceback" not in text, f"{host.name}'s log holds a traceback:\n{text[-6000:]}"
