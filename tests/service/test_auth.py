"""API keys, roles, collection scoping (404, never 403, for what a key may not see) and the audit log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.auth import key_hash
from core.settings import Settings
from service.app import create_app

ADMIN = "rk_admin-key-for-auth-tests"


@pytest.fixture
def app_settings(tmp_path: Path, chroma_server: str) -> Settings:
    return Settings(data_dir=tmp_path, chroma_url=chroma_server, admin_api_key=ADMIN, query={"warm_on_start": False})


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key(client: TestClient, role: str, collections: object = "*", **extra: object) -> str:
    response = client.post(
        "/keys", json={"name": f"{role}-key", "role": role, "collections": collections, **extra}, headers=_as(ADMIN)
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


@pytest.fixture
def two_collections(client: TestClient) -> None:
    for name in ("hr-policies", "finance"):
        assert client.post("/collections", json={"name": name}, headers=_as(ADMIN)).status_code == 201


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": f"Bearer {ADMIN}x"}],
)
def test_requests_without_a_valid_key_are_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/collections", headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "Unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_health_endpoints_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)


def test_a_key_is_shown_once_and_stored_hashed(client: TestClient, app_settings: Settings) -> None:
    key = _key(client, "reader")
    listed = client.get("/keys", headers=_as(ADMIN)).json()["items"][0]
    assert "key" not in listed and key.startswith(listed["prefix"])
    stored = b"".join(p.read_bytes() for p in app_settings.resolved_data_dir.glob("catalog.sqlite*"))
    assert len(stored) > 4096 and key.encode() not in stored
    assert key_hash(key).encode() in stored, "the hash is what the catalog keeps"


@pytest.mark.usefixtures("two_collections")
def test_a_scoped_key_never_sees_other_collections(client: TestClient) -> None:
    reader = _as(_key(client, "reader", ["hr-policies"]))
    assert [c["name"] for c in client.get("/collections", headers=reader).json()["items"]] == ["hr-policies"]
    assert [m["id"] for m in client.get("/v1/models", headers=reader).json()["data"]] == ["hr-policies"]
    hidden = client.get("/collections/finance", headers=reader)
    missing = client.get("/collections/does-not-exist", headers=reader)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"] == "collection 'finance' does not exist"
    for path in (
        "/collections/finance/documents",
        "/collections/finance/versions",
        "/collections/finance/evaluations",
        "/collections/finance/goldensets",
        "/collections/finance/reports/latest",
        "/collections/finance/gaps",
    ):
        assert client.get(path, headers=reader).status_code == 404, path
    query = client.post("/query", json={"collection": "finance", "question": "x"}, headers=reader)
    assert query.status_code == 404
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "finance", "messages": [{"role": "user", "content": "x"}]},
        headers=reader,
    )
    assert chat.status_code == 404


@pytest.mark.usefixtures("two_collections")
def test_jobs_of_hidden_collections_are_404(client: TestClient) -> None:
    upload = client.post(
        "/collections/finance/documents", files=[("files", ("a.txt", b"quarterly numbers"))], headers=_as(ADMIN)
    )
    job_id = upload.json()["job_id"]
    assert client.get(f"/jobs/{job_id}", headers=_as(_key(client, "reader", ["hr-policies"]))).status_code == 404
    assert client.get(f"/jobs/{job_id}", headers=_as(_key(client, "reader", ["finance"]))).status_code == 200


@pytest.mark.usefixtures("two_collections")
def test_roles_limit_what_a_visible_collection_allows(client: TestClient) -> None:
    reader, writer = _as(_key(client, "reader", ["hr-policies"])), _as(_key(client, "writer", ["hr-policies"]))
    files = [("files", ("a.txt", b"vacation policy text"))]
    assert client.get("/collections/hr-policies", headers=reader).status_code == 200
    denied = client.post("/collections/hr-policies/documents", files=files, headers=reader)
    assert denied.status_code == 403 and denied.json()["error"] == "Forbidden"
    assert client.post("/collections/hr-policies/documents", files=files, headers=writer).status_code == 202
    assert client.post("/collections/hr-policies/rollback", headers=reader).status_code == 403
    assert client.post("/collections", json={"name": "new-one"}, headers=writer).status_code == 403
    assert client.delete("/collections/hr-policies", headers=writer).status_code == 403
    assert (
        client.post("/keys", json={"name": "x", "role": "admin", "collections": "*"}, headers=writer).status_code == 403
    )
    assert client.get("/audit", headers=writer).status_code == 403


def test_revocation_takes_effect_in_every_api_process(app_settings: Settings, client: TestClient) -> None:
    key = _key(client, "reader")
    with TestClient(create_app(app_settings)) as other_process:
        assert other_process.get("/collections", headers=_as(key)).status_code == 200
        key_id = client.get("/keys", headers=_as(ADMIN)).json()["items"][0]["id"]
        assert client.delete(f"/keys/{key_id}", headers=_as(ADMIN)).status_code == 204
        refused = other_process.get("/collections", headers=_as(key))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_expired_keys_are_refused(client: TestClient, app_settings: Settings) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=5)  # room for a slow request on a busy machine
    key = _key(client, "reader", expires_at=soon.isoformat())
    assert client.get("/collections", headers=_as(key)).status_code == 200
    past = client.post(
        "/keys",
        json={"name": "old", "role": "reader", "collections": "*", "expires_at": "2001-01-01T00:00:00Z"},
        headers=_as(ADMIN),
    )
    assert past.status_code == 422
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    expired = client.get("/collections", headers=_as(key))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


@pytest.mark.usefixtures("two_collections")
def test_every_change_is_in_the_audit_log(client: TestClient) -> None:
    writer_key = _key(client, "writer", ["hr-policies"])
    client.post("/collections/hr-policies/documents", files=[("files", ("a.txt", b"text"))], headers=_as(writer_key))
    client.patch("/collections/hr-policies", json={"description": "HR"}, headers=_as(writer_key))
    entries = client.get("/audit", headers=_as(ADMIN)).json()["items"]
    actions = [(e["action"], e["key_name"], e["collection"]) for e in entries]
    assert ("documents.upload", "writer-key", "hr-policies") in actions
    assert ("collection.update", "writer-key", "hr-policies") in actions
    assert ("collection.create", "RAGKEEP_ADMIN_API_KEY", "finance") in actions
    assert ("key.create", "RAGKEEP_ADMIN_API_KEY", None) in actions
    upload = next(e for e in entries if e["action"] == "documents.upload")
    assert upload["detail"]["files"][0]["filename"] == "a.txt" and upload["client_ip"]
    assert client.get("/audit", params={"collection": "finance"}, headers=_as(ADMIN)).json()["total"] == 1


def test_disabled_auth_is_explicit(tmp_path: Path, chroma_server: str) -> None:
    settings = Settings(data_dir=tmp_path, chroma_url=chroma_server, auth="disabled", query={"warm_on_start": False})
    with TestClient(create_app(settings)) as open_client:
        assert open_client.get("/collections").status_code == 200
