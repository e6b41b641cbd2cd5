"""Password-protected files at the upload route: refused without their password (422), stored decrypted with it."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.conftest import EXAMPLE_DOCS

ADMIN = {"Authorization": "Bearer rk_admin-key-for-password-tests"}
PASSWORD_PDF = (EXAMPLE_DOCS / "pdf" / "password.pdf").read_bytes()  # user password "password"
SECRET = "zebra-Quartz-5813-unique"  # a password no document, log line or id could contain by chance


@pytest.fixture
def client(tmp_path: Path, chroma_server: str) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        chroma_url=chroma_server,
        admin_api_key=ADMIN["Authorization"][7:],
        query={"warm_on_start": False},
        max_upload_mb=2,
    )
    with TestClient(create_app(settings), headers=ADMIN) as test_client:
        assert test_client.post("/collections", json={"name": "locked"}).status_code == 201
        yield test_client


def _upload(client: TestClient, files: list[tuple[str, bytes]], password: str | None = None) -> object:
    return client.post(
        "/collections/locked/documents",
        files=[("files", file) for file in files],
        data={"password": password} if password is not None else None,
    )


def test_a_protected_pdf_without_its_password_refuses_the_upload_and_names_the_field(client: TestClient) -> None:
    response = _upload(client, [("notes.txt", b"Plain notes."), ("password.pdf", PASSWORD_PDF)])
    assert response.status_code == 422  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == "PasswordRequired"
    assert "password-protected" in body["detail"] and "`password` field" in body["detail"]
    assert client.get("/collections/locked/documents").json()["total"] == 0  # nothing from it was stored


def test_a_wrong_password_is_422_and_not_echoed(client: TestClient) -> None:
    response = _upload(client, [("password.pdf", PASSWORD_PDF)], SECRET)
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.json()["error"] == "WrongPassword"  # type: ignore[attr-defined]
    assert SECRET not in response.text  # type: ignore[attr-defined]


def test_with_its_password_the_decrypted_file_is_stored_and_a_reupload_repeats_it(
    client: TestClient, tmp_path: Path
) -> None:
    first = _upload(client, [("password.pdf", PASSWORD_PDF), ("notes.txt", b"Plain notes.")], "password")
    assert first.status_code == 202, first.text  # type: ignore[attr-defined]
    pdf = next(d for d in first.json()["documents"] if d["filename"] == "password.pdf")  # type: ignore[attr-defined]
    stored = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and p.read_bytes().startswith(b"%PDF")]
    assert len(stored) == 1 and b"/Encrypt" not in stored[0].read_bytes()
    again = _upload(client, [("password.pdf", PASSWORD_PDF)], "password")
    assert again.json()["documents"][0]["sha256"] == pdf["sha256"]  # type: ignore[attr-defined]
    assert again.json()["documents"][0]["changed"] is False  # type: ignore[attr-defined]


def test_a_protected_zip_member_is_refused_alone(client: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes.txt", b"Plain notes.")
        archive.writestr("locked.xlsx", (EXAMPLE_DOCS / "password_protected.xlsx").read_bytes())
    response = _upload(client, [("bundle.zip", buffer.getvalue())])
    assert response.status_code == 202  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert [d["filename"] for d in body["documents"]] == ["notes.txt"]
    assert body["refused"][0]["filename"] == "bundle.zip/locked.xlsx"
    assert "password-protected" in body["refused"][0]["reason"]
    opened = _upload(client, [("bundle.zip", buffer.getvalue())], "123")
    assert sorted(d["filename"] for d in opened.json()["documents"]) == ["locked.xlsx", "notes.txt"]  # type: ignore[attr-defined]


def test_the_openapi_document_describes_the_password_field(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/collections/{name}/documents"]["post"]
    ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    field = schema["components"]["schemas"][ref]["properties"]["password"]
    assert "password-protected" in field["description"] and field.get("writeOnly") is True
