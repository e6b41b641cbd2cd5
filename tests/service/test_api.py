"""API contract in-process: validation, error bodies, upload checks. No worker runs here."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.conftest import EXAMPLE_DOCS

ADMIN_KEY = "rk_admin-key-for-api-tests"


@pytest.fixture
def client(tmp_path: Path, chroma_server: str) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        chroma_url=chroma_server,
        max_upload_mb=1,
        query={"warm_on_start": False},
        admin_api_key=ADMIN_KEY,
    )
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as test_client:
        yield test_client


def _error(response: object, status: int, name: str) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == name
    assert body["detail"]
    return str(body["detail"])


def _create(client: TestClient, name: str = "hr-policies", **extra: object) -> dict[str, object]:
    response = client.post("/collections", json={"name": name, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_read_update_list_collection(client: TestClient) -> None:
    created = _create(client, owners=["a@example.com"], description="HR", config={"publish_policy": "manual"})
    assert created["live_version"] is None and created["config"]["publish_policy"] == "manual"  # type: ignore[index]
    patched = client.patch("/collections/hr-policies", json={"owners": ["b@example.com"]}).json()
    assert patched["owners"] == ["b@example.com"] and patched["description"] == "HR"
    listing = client.get("/collections").json()
    assert listing["total"] == 1 and listing["items"][0]["name"] == "hr-policies"


def test_duplicate_collection_is_409(client: TestClient) -> None:
    _create(client)
    _error(client.post("/collections", json={"name": "hr-policies"}), 409, "CollectionExists")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad Name"},
        {"name": "ab"},
        {"name": "ok-name", "owners": ["not-an-email"]},
        {"name": "ok-name", "config": {"keep_versions": -1}},
        {"name": "ok-name", "config": {"unknown": 1}},
        {"name": "ok-name", "config": {"ingestion": {"strategy": "hi_res"}}},
        {"name": "ok-name", "extra": True},
    ],
)
def test_invalid_collection_bodies_are_422(client: TestClient, body: dict[str, object]) -> None:
    _error(client.post("/collections", json=body), 422, "InvalidInput")


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/collections", content=b"{not json", headers={"content-type": "application/json"})
    _error(response, 422, "InvalidInput")


@pytest.mark.parametrize(
    "path", ["/collections/nope", "/collections/nope/documents", "/collections/nope/versions", "/jobs/nope"]
)
def test_unknown_ids_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404
    assert client.get(path).json()["error"].endswith("NotFound")


def test_unknown_version_and_document_are_404(client: TestClient) -> None:
    _create(client)
    _error(client.get("/collections/hr-policies/versions/7"), 404, "VersionNotFound")
    _error(client.get("/collections/hr-policies/documents/abc"), 404, "DocumentNotFound")
    _error(client.post("/collections/hr-policies/versions/7/publish"), 404, "VersionNotFound")
    _error(client.post("/collections/hr-policies/rollback"), 409, "VersionNotReady")


def _files(*names: str) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (name, (EXAMPLE_DOCS / name).read_bytes())) for name in names]


def test_upload_accepts_and_reupload_is_a_noop(client: TestClient) -> None:
    _create(client)
    first = client.post("/collections/hr-policies/documents", files=_files("fake-text.txt", "simple.docx"))
    assert first.status_code == 202, first.text
    body = first.json()
    assert [d["changed"] for d in body["documents"]] == [True, True]
    job = client.get(f"/jobs/{body['job_id']}").json()
    assert job["kind"] == "ingest" and job["progress"]["total"] == 2

    again = client.post("/collections/hr-policies/documents", files=_files("fake-text.txt")).json()
    assert again["documents"][0]["changed"] is False
    assert again["documents"][0]["id"] == body["documents"][0]["id"]
    assert client.get(f"/jobs/{again['job_id']}").json()["status"] == "succeeded"

    docs = client.get("/collections/hr-policies/documents").json()
    assert docs["total"] == 2
    one = client.get(f"/collections/hr-policies/documents/{body['documents'][0]['id']}").json()
    assert one["revisions"][0]["number"] == 1 and one["status"] == "queued"


def test_unsupported_type_is_415_and_stores_nothing(client: TestClient) -> None:
    _create(client)
    response = client.post("/collections/hr-policies/documents", files=_files("fake-text.txt", "CantinaBand3.wav"))
    assert "CantinaBand3.wav" in _error(response, 415, "UnsupportedFileType")
    assert client.get("/collections/hr-policies/documents").json()["total"] == 0


def test_file_over_the_limit_is_413(client: TestClient) -> None:
    _create(client)
    big = b"word " * (1024 * 1024 // 5 + 10)
    response = client.post("/collections/hr-policies/documents", files=[("files", ("big.txt", big))])
    _error(response, 413, "FileTooLarge")


def test_empty_file_is_422(client: TestClient) -> None:
    _create(client)
    _error(client.post("/collections/hr-policies/documents", files=[("files", ("e.txt", b""))]), 422, "InvalidInput")


@pytest.mark.parametrize(
    "metadata", ["{bad", "[1, 2]", json.dumps({"filename": "x"}), json.dumps({"nested": {"a": 1}})]
)
def test_bad_upload_metadata_is_422(client: TestClient, metadata: str) -> None:
    _create(client)
    response = client.post(
        "/collections/hr-policies/documents", files=_files("fake-text.txt"), data={"metadata": metadata}
    )
    _error(response, 422, "InvalidInput")


def test_path_components_are_stripped_from_filenames(client: TestClient) -> None:
    _create(client)
    response = client.post(
        "/collections/hr-policies/documents", files=[("files", ("../../etc/passwd.txt", io.BytesIO(b"root text")))]
    )
    assert response.status_code == 202
    assert response.json()["documents"][0]["filename"] == "passwd.txt"


def test_upload_without_files_is_422(client: TestClient) -> None:
    _create(client)
    _error(client.post("/collections/hr-policies/documents", data={"metadata": "{}"}), 422, "InvalidInput")


def test_delete_collection_removes_it_and_its_blobs(client: TestClient, tmp_path: Path) -> None:
    _create(client)
    client.post("/collections/hr-policies/documents", files=_files("fake-text.txt"))
    assert any((tmp_path / "blobs").rglob("*"))
    assert client.delete("/collections/hr-policies").status_code == 204
    assert client.get("/collections/hr-policies").status_code == 404
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"catalog": "ok", "broker": "ok", "chroma": "ok", "blobs": "ok"}


def test_readiness_reports_an_unreachable_chroma(tmp_path: Path) -> None:
    from tests.processes import free_port

    settings = Settings(data_dir=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}", query={"warm_on_start": False})
    with TestClient(create_app(settings)) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["chroma"].startswith("unreachable")


def test_metrics_count_requests_and_show_catalog_state(client: TestClient) -> None:
    _create(client)
    client.post("/collections/hr-policies/documents", files=_files("fake-text.txt"))
    client.get("/collections/nope")
    body = TestClient(client.app).get("/metrics")  # no key needed
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    text = body.text
    assert 'ragkeep_http_requests_total{method="POST",route="/collections",status="201"}' in text
    assert 'ragkeep_http_requests_total{method="GET",route="/collections/{name}",status="404"}' in text
    assert 'ragkeep_jobs{kind="ingest",status="queued"} 1.0' in text
    assert 'ragkeep_document_revisions{status="queued"} 1.0' in text


def test_patch_merges_a_partial_config(client: TestClient) -> None:
    _create(client, config={"publish_policy": "manual", "retrieval": {"top_k": 8}})
    patched = client.patch("/collections/hr-policies", json={"config": {"retrieval": {"hybrid": True}}})
    assert patched.status_code == 200, patched.text
    config = patched.json()["config"]
    assert config["publish_policy"] == "manual"
    assert {k: config["retrieval"][k] for k in ("top_k", "hybrid", "min_score")} == {
        "top_k": 8,
        "hybrid": True,
        "min_score": None,
    }
    bad = client.patch("/collections/hr-policies", json={"config": {"retrieval": {"top_k": 0}}})
    assert bad.status_code == 422 and "retrieval.top_k" in bad.json()["detail"]
    unknown = client.patch("/collections/hr-policies", json={"config": {"nonsense": 1}})
    assert unknown.status_code == 422
    ignored = client.patch(
        "/collections/hr-policies", json={"config": {"retrieval": {"fusion": "rrf", "title_weight": 1}}}
    )
    assert ignored.status_code == 422 and "minmax only" in ignored.json()["detail"]


def test_prompt_revisions_are_stored_and_validated(client: TestClient) -> None:
    _create(client)
    created = client.post(
        "/collections/hr-policies/prompts",
        json={"template": "Answer from:\n{context}\nQuestion: {question}", "note": "shorter"},
    )
    assert created.status_code == 201 and created.json()["revision"] == 1
    bad = client.post("/collections/hr-policies/prompts", json={"template": "no slots in this template at all"})
    assert bad.status_code == 422
    pinned = client.patch("/collections/hr-policies", json={"config": {"prompt_revision": 1}})
    assert pinned.json()["config"]["prompt_revision"] == 1
    assert client.get("/collections/hr-policies/prompts").json()["total"] == 1


def test_concurrent_publish_and_rollback_leave_one_consistent_live_version(
    client: TestClient, tmp_path: Path, chroma_server: str
) -> None:
    """Two API processes race to move the live pointer: each call wins or gets 409, never a mixed state."""
    import threading

    from sqlalchemy import select

    from core import catalog
    from core.chroma import version_collection_name
    from core.db import Database
    from core.models import Collection, JobKind, Version, VersionState

    _create(client)
    db = Database(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with db.session() as session:
        collection = catalog.get_collection(session, "hr-policies")
        for _ in range(3):
            job = catalog.create_job(session, JobKind.build, collection.id)
            version = catalog.create_version(session, collection, job.id, version_collection_name)
            version.state = VersionState.ready
            session.commit()
    second_process = create_app(
        Settings(data_dir=tmp_path, chroma_url=chroma_server, query={"warm_on_start": False}, admin_api_key=ADMIN_KEY)
    )
    other = TestClient(second_process, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with other:
        statuses: list[int] = []
        for round_ in range(6):
            calls = (
                [
                    ("/collections/hr-policies/versions/2/publish", client),
                    ("/collections/hr-policies/versions/3/publish", other),
                ]
                if round_ % 2 == 0
                else [
                    ("/collections/hr-policies/rollback", client),
                    ("/collections/hr-policies/versions/1/publish", other),
                ]
            )
            barrier = threading.Barrier(len(calls))

            def call(path: str, api: TestClient, start: threading.Barrier) -> None:
                start.wait()
                statuses.append(api.post(path).status_code)

            threads = [threading.Thread(target=call, args=(*c, barrier)) for c in calls]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            with db.session() as session:
                live = session.scalars(select(Version).where(Version.state == VersionState.live)).all()
                pointer = session.scalar(select(Collection.live_version_id))
                assert len(live) == 1 and live[0].id == pointer, "exactly one live version, the one the pointer names"
    db.dispose()
    print("concurrent publish/rollback statuses:", statuses)
    assert set(statuses) <= {200, 409} and 200 in statuses
