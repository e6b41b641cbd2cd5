"""Upload over HTTP -> real Celery worker on Redis -> versioned Chroma collections -> live version."""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta

import chromadb
import pytest

from core import catalog, chroma
from core.blobs import LocalBlobStore
from core.db import Database
from core.models import JobKind, utcnow
from core.settings import Settings
from tests.conftest import DATASETS, EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import Stack
from workers.client import TaskClient
from workers.names import TaskName

pytestmark = pytest.mark.integration

PDF = DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf"


def _read(name: str) -> tuple[str, bytes]:
    return name, (EXAMPLE_DOCS / name).read_bytes()


def _chroma(stack: Stack) -> chromadb.api.ClientAPI:
    return chroma.connect(stack.chroma_url)


def test_upload_builds_a_live_version_and_changes_build_new_ones(redis_stack: Stack) -> None:
    s = redis_stack
    assert s.http.post("/collections", json={"name": "handbook", "owners": ["hr@example.com"]}).status_code == 201

    first = s.upload(
        "handbook",
        [_read("fake-text.txt"), _read("simple.docx"), ("distilbert.pdf", PDF.read_bytes())],
        metadata='{"department": "research"}',
    )
    job = s.wait_job(first["job_id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 3, "total": 3}

    v1 = s.wait_live("handbook", 1)
    assert v1["state"] == "live" and v1["document_count"] == 3 and v1["chunk_count"] > 10
    assert sorted(v1["changes"]["added"]) == ["distilbert.pdf", "fake-text.txt", "simple.docx"]
    stored = _chroma(s).get_collection("rk_handbook_v1")
    assert stored.count() == v1["chunk_count"]
    assert stored.get(limit=1, include=["metadatas"])["metadatas"][0]["department"] == "research"
    assert s.http.get("/collections/handbook").json()["live_version"] == 1
    docs = s.http.get("/collections/handbook/documents").json()["items"]
    assert {d["status"] for d in docs} == {"ready"} and all(d["chunk_count"] > 0 for d in docs)

    # Identical bytes again: nothing is parsed and no version is built.
    again = s.upload("handbook", [_read("fake-text.txt")], metadata='{"department": "research"}')
    assert again["documents"][0]["changed"] is False
    assert s.http.get(f"/jobs/{again['job_id']}").json()["status"] == "succeeded"

    # New bytes under an existing name: only that document's chunks are embedded.
    replaced = s.upload(
        "handbook",
        [("fake-text.txt", (EXAMPLE_DOCS / "norwich-city.txt").read_bytes())],
        metadata='{"department": "research"}',
    )
    assert replaced["documents"][0]["revision"] == 2
    s.wait_job(replaced["job_id"])
    v2 = s.wait_live("handbook", 2)
    new_doc = s.http.get(f"/collections/handbook/documents/{replaced['documents'][0]['id']}").json()
    assert v2["state"] == "live" and v2["changes"]["replaced"] == ["fake-text.txt"]
    assert v2["embedded_chunk_count"] == new_doc["chunk_count"]
    assert v2["reused_chunk_count"] == v2["chunk_count"] - new_doc["chunk_count"]
    assert [r["number"] for r in new_doc["revisions"]] == [1, 2]
    versions = s.http.get("/collections/handbook/versions").json()
    assert versions["total"] == 2 and versions["items"][1]["state"] == "archived"

    # A corrupt file fails alone: the good file in the same batch goes live.
    broken = s.upload("handbook", [("cut.pdf", PDF.read_bytes()[:3000]), _read("fake-html.html")])
    job = s.wait_job(broken["job_id"])
    assert job["status"] == "failed" and "cut.pdf" in job["error"] and "fake-html.html" not in job["error"]
    bad_doc = next(d for d in broken["documents"] if d["filename"] == "cut.pdf")
    bad = s.http.get(f"/collections/handbook/documents/{bad_doc['id']}").json()
    assert bad["status"] == "failed" and "PDF" in bad["error"]
    v3 = s.wait_live("handbook", 3)
    assert v3["state"] == "live" and v3["changes"]["added"] == ["fake-html.html"] and v3["document_count"] == 4

    # Rollback moves the live pointer back; publish moves it forward again.
    assert s.http.post("/collections/handbook/rollback").json()["number"] == 2
    assert s.http.get("/collections/handbook").json()["live_version"] == 2
    assert s.http.post("/collections/handbook/versions/3/publish").json()["state"] == "live"

    # Deleting a document is a change too.
    deleted = s.http.delete(f"/collections/handbook/documents/{bad_doc['id']}")
    assert deleted.status_code == 202
    pdf_id = next(d["id"] for d in first["documents"] if d["filename"] == "distilbert.pdf")
    removal = s.http.delete(f"/collections/handbook/documents/{pdf_id}").json()
    assert s.wait_job(removal["build_job_id"])["status"] == "succeeded"
    v4 = s.wait_live("handbook", 4)
    assert v4["changes"]["removed"] == ["distilbert.pdf"] and v4["document_count"] == 3

    # Deleting the collection removes its Chroma collections.
    assert s.http.delete("/collections/handbook").status_code == 204
    names = {c.name for c in _chroma(s).list_collections()}
    assert not any(n.startswith("rk_handbook_") for n in names)


def test_uploads_arriving_one_by_one_are_batched_into_few_versions(redis_stack: Stack) -> None:
    s = redis_stack
    s.http.post("/collections", json={"name": "batched"})
    sources = sorted((DATASETS / "jsquad-v1.3-valid" / "source_files").glob("*.txt"))[:12]
    jobs = [s.upload("batched", [(p.name, p.read_bytes())])["job_id"] for p in sources]
    for job_id in jobs:
        assert s.wait_job(job_id)["status"] == "succeeded"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = s.http.get("/collections/batched").json()["live_version"]
        if live and s.http.get(f"/collections/batched/versions/{live}").json()["document_count"] == len(sources):
            break
        time.sleep(0.5)
    else:
        pytest.fail("no live version holds every uploaded document")
    total = s.http.get("/collections/batched/versions").json()["total"]
    assert total < len(sources) / 2, f"{total} versions for {len(sources)} uploads"


def test_builds_of_one_collection_run_one_at_a_time(redis_stack: Stack) -> None:
    """A build requested while another runs waits for it (two builds at once would each write every vector)."""
    s = redis_stack
    s.http.post("/collections", json={"name": "serial", "config": {"publish_policy": "manual"}})
    sources = sorted((DATASETS / "jsquad-v1.3-valid" / "source_files").glob("*.txt"))[:12]
    s.wait_job(s.upload("serial", [(p.name, p.read_bytes()) for p in sources])["job_id"])
    s.wait_live("serial", 1)
    first = s.http.post("/collections/serial/versions").json()["job_id"]
    deadline = time.monotonic() + 60
    while s.http.get(f"/jobs/{first}").json()["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    second = s.http.post("/collections/serial/versions").json()["job_id"]
    assert second != first
    one, two = s.wait_job(first), s.wait_job(second)
    assert one["status"] == two["status"] == "succeeded"
    assert two["started_at"] >= one["finished_at"], (one, two)
    assert {one["result"]["version"], two["result"]["version"]} == {2, 3}


def test_manual_policy_builds_but_does_not_publish(redis_stack: Stack) -> None:
    s = redis_stack
    s.http.post("/collections", json={"name": "manual-kb", "config": {"publish_policy": "manual"}})
    s.wait_job(s.upload("manual-kb", [_read("fake-text.txt")])["job_id"])
    v1 = s.wait_live("manual-kb", 1)
    assert v1["state"] == "ready" and s.http.get("/collections/manual-kb").json()["live_version"] is None
    assert s.http.post("/collections/manual-kb/versions/1/publish").json()["state"] == "live"

    build = s.http.post("/collections/manual-kb/versions")
    assert build.status_code == 202
    assert s.wait_job(build.json()["job_id"])["result"]["version"] == 2
    assert s.http.get("/collections/manual-kb").json()["live_version"] == 1


def test_reconciler_dispatches_a_job_whose_message_was_lost(redis_stack: Stack) -> None:
    """The catalog holds a queued job but the broker never got its message (e.g. a broker outage)."""
    s = redis_stack
    s.http.post("/collections", json={"name": "lost-message"})
    settings = Settings(
        data_dir=s.data_dir, redis_url=REDIS_URL, queue_prefix=s.env["RAGKEEP_QUEUE_PREFIX"], chroma_url=s.chroma_url
    )
    db = Database(settings.resolved_database_url)
    data = (EXAMPLE_DOCS / "fake-text.txt").read_bytes()
    with db.session() as session:
        collection = catalog.get_collection(session, "lost-message")
        job = catalog.create_job(session, JobKind.ingest, collection.id, total=1)
        catalog.record_upload(
            session,
            collection,
            [
                catalog.IncomingFile(
                    "a.txt",
                    LocalBlobStore(settings.blob_dir).put(collection.id, data),
                    len(data),
                    "txt",
                    "text/plain",
                    {},
                )
            ],
            job,
        )
        job.created_at = utcnow() - timedelta(hours=1)
        job_id = job.id
    db.dispose()
    assert s.http.get(f"/jobs/{job_id}").json()["status"] == "queued"

    client = TaskClient(settings)
    assert client.send(TaskName.reconcile, [])
    client.close()
    job_read = s.wait_job(job_id, timeout=120)
    assert job_read["status"] == "succeeded" and job_read["attempts"] >= 1
    assert s.wait_live("lost-message", 1)["document_count"] == 1


def test_a_first_upload_that_fails_entirely_builds_no_empty_version(redis_stack: Stack) -> None:
    s = redis_stack
    s.http.post("/collections", json={"name": "all-broken"})
    upload = s.upload("all-broken", [("cut.pdf", PDF.read_bytes()[:3000])])
    assert s.wait_job(upload["job_id"])["status"] == "failed"
    deadline = time.monotonic() + 30
    while "build_job_id" not in (job := s.http.get(f"/jobs/{upload['job_id']}").json())["result"]:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    build = s.wait_job(job["result"]["build_job_id"])
    assert build["status"] == "succeeded" and build["result"]["version"] is None
    assert s.http.get("/collections/all-broken/versions").json()["total"] == 0


def test_one_changed_document_of_many_builds_a_delta_that_answers_like_a_full_version(redis_stack: Stack) -> None:
    s = redis_stack
    assert s.http.post("/collections", json={"name": "abstracts"}).status_code == 201
    with (DATASETS / "beir-scifact" / "corpus.jsonl").open() as lines:
        corpus = [json.loads(line) for line in itertools.islice(lines, 30)]
    files = [(f"{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()) for d in corpus]
    s.wait_job(s.upload("abstracts", files)["job_id"])
    v1 = s.wait_live("abstracts", 1)

    name, old_title = files[7][0], corpus[7]["title"]
    changed = s.wait_job(s.upload("abstracts", [(name, b"Axolotl limbs regrow after amputation.")])["job_id"])
    assert s.wait_job(changed["result"]["build_job_id"])["status"] == "succeeded"
    v2 = s.http.get("/collections/abstracts/versions/2").json()
    assert v2["state"] == "live" and v2["base_version"] == 1 and v2["embedded_chunk_count"] == 1
    assert _chroma(s).get_collection(v2["chroma_collection"]).count() == 1, "only the changed chunk is written"
    assert v2["chunk_count"] == v1["chunk_count"] - _chunks_of(s, v1, name) + 1

    def ask(question: str, version: int | None = None) -> list[dict[str, str]]:
        body = {"collection": "abstracts", "question": question, "mode": "retrieve", "top_k": 5}
        response = s.http.post("/query", json=body | ({"version": version} if version else {}))
        assert response.status_code == 200, response.text
        citations: list[dict[str, str]] = response.json()["citations"]
        return citations

    new = ask("axolotl limb regrowth after amputation")
    assert new[0]["filename"] == name and "Axolotl" in new[0]["text"]
    assert all(old_title not in c["text"] for c in ask(old_title)), "the old text is hidden in the delta"
    assert old_title in ask(old_title, version=1)[0]["text"], "version 1 still answers as before"
    # Rolling back makes the base live again, answering as before.
    # The rollback is committed when its 200 arrives: the very next query reads version 1.
    assert s.http.post("/collections/abstracts/rollback").status_code == 200
    assert old_title in ask(old_title)[0]["text"]


def _chunks_of(s: Stack, version: dict[str, object], filename: str) -> int:
    """How many chunks ``filename`` has in ``version`` (from its Chroma collection)."""
    stored = _chroma(s).get_collection(str(version["chroma_collection"])).get(include=["metadatas"])
    return sum(1 for meta in stored["metadatas"] or [] if meta["filename"] == filename)
