"""Archives, emails with attachments and converted formats, uploaded over HTTP to a real worker (issue 19)."""

from __future__ import annotations

import io
import zipfile

import pytest

from core import chroma
from tests.conftest import EXAMPLE_DOCS
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("legacy/fake.doc", (EXAMPLE_DOCS / "fake.doc").read_bytes())
        archive.writestr("tables/cups-utf-16.csv", (EXAMPLE_DOCS / "stanley-cups-utf-16.csv").read_bytes())
        archive.writestr("books/eng_spa_mult.epub", (EXAMPLE_DOCS / "language-docs/eng_spa_mult.epub").read_bytes())
        archive.writestr("__MACOSX/legacy/._fake.doc", b"\0\5\26\7resource fork")
    return buffer.getvalue()


def test_a_zip_and_emails_become_linked_documents_in_a_live_version(redis_stack: Stack) -> None:
    s = redis_stack
    assert s.http.post("/collections", json={"name": "bundles"}).status_code == 201
    answer = s.upload(
        "bundles",
        [
            ("bundle.zip", _bundle()),
            ("mail.eml", (EXAMPLE_DOCS / "eml/fake-email-attachment.eml").read_bytes()),
            ("song.eml", (EXAMPLE_DOCS / "eml/mime-attach-mp3.eml").read_bytes()),
        ],
    )
    names = {
        "legacy/fake.doc",
        "tables/cups-utf-16.csv",
        "books/eng_spa_mult.epub",
        "mail.eml",
        "mail.eml/fake-attachment.txt",
        "song.eml",
    }
    assert {d["filename"] for d in answer["documents"]} == names
    assert [r["filename"] for r in answer["refused"]] == ["song.eml/sample-3s.mp3"]
    job = s.wait_job(answer["job_id"], timeout=300)
    assert job["status"] == "succeeded", job
    assert job["result"]["refused"][0]["reason"].startswith("skipped: audio")

    live = s.wait_live("bundles", 1, timeout=300)
    assert live["document_count"] == len(names)
    stored = chroma.connect(s.chroma_url).get_collection("rk_bundles_v1").get(include=["metadatas", "documents"])
    by_file: dict[str, list[tuple[str, dict[str, object]]]] = {}
    for text, metadata in zip(stored["documents"] or [], stored["metadatas"] or [], strict=True):
        by_file.setdefault(str(metadata["filename"]), []).append((text, dict(metadata)))
    assert set(by_file) == names
    attachment = by_file["mail.eml/fake-attachment.txt"][0]
    assert "fake attachment" in attachment[0] and attachment[1]["parent"] == "mail.eml"
    assert by_file["legacy/fake.doc"][0][1]["parent"] == "bundle.zip"
    assert by_file["legacy/fake.doc"][0][1]["parser"] == "libreoffice"
    assert any("Maple Leafs" in text for text, _ in by_file["tables/cups-utf-16.csv"])
    assert any("Email with MP3 Attachment" in text for text, _ in by_file["song.eml"])  # the body stays
