"""The API on the S3 blob store (a real SeaweedFS): uploads land in the bucket, and a store that fails is a 503
with its reason, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.conftest import EXAMPLE_DOCS
from tests.processes import free_port
from tests.s3server import S3Server

ADMIN_KEY = "rk_admin-key-for-s3-api-tests"


def _client(tmp_path: Path, chroma_server: str, blobs: dict[str, object]) -> TestClient:
    settings = Settings(
        data_dir=tmp_path,
        chroma_url=chroma_server,
        query={"warm_on_start": False},
        admin_api_key=ADMIN_KEY,
        blobs=blobs,
    )
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"})


def _blobs(server: S3Server, bucket: str, **extra: object) -> dict[str, object]:
    return {
        "url": f"s3://{bucket}/api",
        "endpoint_url": server.endpoint,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "timeout_s": 2,
        **extra,
    }


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


def _upload(client: TestClient) -> object:
    data = (EXAMPLE_DOCS / "fake-text.txt").read_bytes()
    return client.post("/collections/notes/documents", files=[("files", ("fake-text.txt", data))])


def test_uploads_go_to_the_bucket_and_leave_with_their_collection(
    tmp_path: Path, chroma_server: str, s3_server: S3Server, bucket: str
) -> None:
    with _client(tmp_path, chroma_server, _blobs(s3_server, bucket)) as client:
        assert client.post("/collections", json={"name": "notes"}).status_code == 201
        response = _upload(client)
        assert response.status_code == 202, response.text  # type: ignore[attr-defined]
        sha = response.json()["documents"][0]["sha256"]  # type: ignore[attr-defined]
        keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith("api/") and keys[0].endswith(f"/{sha[:2]}/{sha}")
        assert client.get("/readyz").json()["checks"]["blobs"] == "ok"
        assert client.delete("/collections/notes").status_code == 204
        assert not s3_server.client().list_objects_v2(Bucket=bucket).get("Contents")
    assert not (tmp_path / "blobs").exists(), "nothing is written to the local folder"


@pytest.mark.parametrize("failure", ["unreachable", "credentials", "bucket"])
def test_a_failing_store_is_a_503_with_its_reason(
    tmp_path: Path, chroma_server: str, s3_server: S3Server, bucket: str, failure: str
) -> None:
    blobs = {
        "unreachable": _blobs(s3_server, bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_s=1),
        "credentials": _blobs(s3_server, bucket, access_key_id="nobody"),
        "bucket": _blobs(s3_server, "no-such-bucket-for-ragkeep"),
    }[failure]
    reason = {
        "unreachable": "unreachable",
        "credentials": "refused ragkeep's credentials",
        "bucket": "does not exist",
    }[failure]
    with _client(tmp_path, chroma_server, blobs) as client:
        assert client.post("/collections", json={"name": "notes"}).status_code == 201
        response = _upload(client)
        assert response.status_code == 503, response.text  # type: ignore[attr-defined]
        body = response.json()  # type: ignore[attr-defined]
        assert body["error"] == "BlobStoreUnavailable" and reason in body["detail"], body
        assert response.headers["Retry-After"]  # type: ignore[attr-defined]
        # Nothing was recorded for an upload whose bytes were not stored.
        assert client.get("/collections/notes/documents").json()["total"] == 0
        ready = client.get("/readyz")
        assert ready.status_code == 503 and reason in ready.json()["checks"]["blobs"], ready.text
