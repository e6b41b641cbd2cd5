"""Uploads of archives, emails and converted formats at the API (issue 19 items 2-4)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import Database
from core.models import Document, DocumentRevision
from core.settings import Settings
from ingest import convert
from service.app import create_app
from tests.conftest import EXAMPLE_DOCS

ADMIN = {"Authorization": "Bearer rk_admin-key-for-container-tests"}


@pytest.fixture
def client(tmp_path: Path, chroma_server: str) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        chroma_url=chroma_server,
        admin_api_key=ADMIN["Authorization"][7:],
        query={"warm_on_start": False},
        max_upload_mb=2,
        max_files_per_request=5,
    )
    test_client = TestClient(create_app(settings), headers=ADMIN)
    test_client.app_settings = settings  # type: ignore[attr-defined]
    with test_client:
        assert test_client.post("/collections", json={"name": "kb-one"}).status_code == 201
        yield test_client


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _upload(client: TestClient, name: str, data: bytes) -> dict[str, object]:
    response = client.post("/collections/kb-one/documents", files=[("files", (name, data))])
    body: dict[str, object] = response.json()
    body["status_code"] = response.status_code
    return body


def test_a_zip_upload_answers_with_its_documents_and_the_members_it_refused(client: TestClient) -> None:
    wav = (EXAMPLE_DOCS / "CantinaBand3.wav").read_bytes()
    data = _zip(
        {"notes.txt": b"Leave policy notes.", "hr/rules.md": b"# Rules\n\nBe kind.", "../up.txt": b"x", "a.wav": wav}
    )
    body = _upload(client, "bundle.zip", data)
    assert body["status_code"] == 202
    assert sorted(d["filename"] for d in body["documents"]) == ["hr/rules.md", "notes.txt"]  # type: ignore[attr-defined]
    refused = {r["filename"]: r["reason"] for r in body["refused"]}  # type: ignore[attr-defined]
    assert set(refused) == {"bundle.zip/../up.txt", "bundle.zip/a.wav"}
    assert "leaves the archive" in refused["bundle.zip/../up.txt"] and "audio" in refused["bundle.zip/a.wav"]
    job = client.get(f"/jobs/{body['job_id']}").json()
    assert {r["filename"] for r in job["result"]["refused"]} == set(refused)  # recorded, not only answered


def test_an_email_and_its_attachment_become_linked_documents(client: TestClient) -> None:
    data = (EXAMPLE_DOCS / "eml" / "fake-email-attachment.eml").read_bytes()
    body = _upload(client, "mail.eml", data)
    assert body["status_code"] == 202 and body["refused"] == []
    names = sorted(d["filename"] for d in body["documents"])  # type: ignore[attr-defined]
    assert names == ["mail.eml", "mail.eml/fake-attachment.txt"]
    database = Database(client.app_settings.resolved_database_url)  # type: ignore[attr-defined]
    with database.session() as session:
        metadata = {
            document.filename: revision.upload_metadata
            for revision, document in session.execute(select(DocumentRevision, Document).join(Document))
        }
    assert metadata["mail.eml/fake-attachment.txt"]["parent"] == "mail.eml" and "parent" not in metadata["mail.eml"]


def test_an_archive_with_more_files_than_an_upload_may_hold_is_refused_whole(client: TestClient) -> None:
    body = _upload(client, "many.zip", _zip({f"n{i}.txt": f"note {i}".encode() for i in range(6)}))
    assert body["status_code"] == 422 and "at most 5" in str(body["detail"])
    assert client.get("/collections/kb-one/documents").json()["total"] == 0


def test_parent_is_reserved_metadata(client: TestClient) -> None:
    response = client.post(
        "/collections/kb-one/documents", files=[("files", ("a.txt", b"text"))], data={"metadata": '{"parent": "x"}'}
    )
    assert response.status_code == 422 and "reserved" in response.json()["detail"]


def test_a_format_without_its_converter_is_refused_with_what_to_install(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(convert, "_libreoffice_has", lambda kind: False)
    monkeypatch.setattr(convert, "pandoc_path", lambda: None)
    body = _upload(client, "slides.ppt", (EXAMPLE_DOCS / "fake-power-point.ppt").read_bytes())
    assert body["status_code"] == 415 and body["error"] == "UnsupportedFileType"
    assert "apt-get install --no-install-recommends libreoffice-core libreoffice-impress" in str(body["detail"])
    assert client.get("/collections/kb-one/documents").json()["total"] == 0


def test_legacy_office_files_are_accepted_where_libreoffice_is_installed(client: TestClient) -> None:
    if convert.soffice_path() is None:
        pytest.skip("LibreOffice is not installed")
    body = _upload(client, "fake.doc", (EXAMPLE_DOCS / "fake.doc").read_bytes())
    assert body["status_code"] == 202
    assert [d["filename"] for d in body["documents"]] == ["fake.doc"]  # type: ignore[attr-defined]
