"""A barrage of hostile and broken input through HTTP with a real worker: each gets a clear 4xx
or fails as a document with a reason, the worker survives, and the version that was live
before still answers the same queries with the same results."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from pypdf import PdfWriter

from tests.conftest import DATASETS, EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import Stack, run_stack

pytestmark = pytest.mark.integration

PDF = DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf"
QUESTIONS = ("Who comes home under the sun?", "simple document", "lorem ipsum")


@pytest.fixture(scope="module")
def fortress(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[Stack]:
    env = {
        "RAGKEEP_REDIS_URL": REDIS_URL,
        "RAGKEEP_MAX_UPLOAD_MB": "5",
        "RAGKEEP_LIMITS__MAX_PDF_PAGES": "40",
        # A 5 MB single-line text makes the parser process grow by ~3.2 GiB; the rest by far less.
        "RAGKEEP_LIMITS__MAX_PARSE_MEMORY_MB": "1500",
        "RAGKEEP_LIMITS__MAX_UNPACKED_MB": "10",
    }
    yield from run_stack(tmp_path_factory.mktemp("hostile-stack"), chroma_server, env)


def _retrieve(s: Stack, version: int) -> list[list[tuple[str, float]]]:
    results = []
    for question in QUESTIONS:
        body = {"collection": "fortress", "question": question, "mode": "retrieve", "version": version}
        response = s.http.post("/query", json=body)
        assert response.status_code == 200, response.text
        results.append([(c["chunk_id"], round(c["score"], 5)) for c in response.json()["citations"]])
    return results


def _many_pages(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", b"\0" * 40 * 1024 * 1024)
    return buffer.getvalue()


def _upload(s: Stack, name: str, data: bytes, content_type: str | None = None) -> Any:
    file = (name, data, content_type) if content_type else (name, data)
    return s.http.post("/collections/fortress/documents", files=[("files", file)])


def test_hostile_input_is_answered_and_loses_nothing(fortress: Stack) -> None:
    s = fortress
    assert s.http.post("/collections", json={"name": "fortress"}).status_code == 201
    good = s.upload(
        "fortress",
        [
            ("fake-text.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes()),
            ("simple.docx", (EXAMPLE_DOCS / "simple.docx").read_bytes()),
        ],
    )
    s.wait_job(good["job_id"])
    assert s.wait_live("fortress", 1)["state"] == "live"
    before = _retrieve(s, 1)
    documents_before = s.http.get("/collections/fortress/documents").json()["total"]

    # Refused at the door: a clear 4xx, and nothing is stored.
    refused = {
        "empty.txt": (_upload(s, "empty.txt", b""), 422),
        "bomb.xlsx": (_upload(s, "bomb.xlsx", _zip_bomb()), 422),
        "huge.txt": (_upload(s, "huge.txt", b"a" * (6 * 1024 * 1024)), 413),
        "program.exe": (_upload(s, "program.exe", b"MZ\x90\x00\x03" + bytes(range(256)) * 40), 415),
        "long name": (_upload(s, "n" * 300 + ".txt", b"some text"), 422),
        "dots": (_upload(s, "..", b"some text"), 422),
        # Password-protected, without the upload's `password` field: refused at the door, not failed later.
        "aes-256.pdf": (
            _upload(s, "aes-256.pdf", (DATASETS / "pdfminer-samples-subset/encryption/aes-256.pdf").read_bytes()),
            422,
        ),
        "locked.xlsx": (_upload(s, "locked.xlsx", (EXAMPLE_DOCS / "password_protected.xlsx").read_bytes()), 422),
    }
    for name, (response, status) in refused.items():
        assert response.status_code == status, (name, response.text)
        assert response.json()["detail"], name
    assert {refused[n][0].json()["error"] for n in ("aes-256.pdf", "locked.xlsx")} == {"PasswordRequired"}
    assert s.http.get("/collections/fortress/documents").json()["total"] == documents_before

    # Requests that make no sense.
    assert s.http.post("/query", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    assert s.http.post("/query", json={"collection": "fortress", "question": "x", "nope": 1}).status_code == 422
    assert s.http.post("/query", json={"collection": "fortress", "question": 5}).status_code == 422
    assert s.http.get("/collections/fortress/versions/999").status_code == 404
    assert s.http.get("/jobs/no-such-job").status_code == 404
    assert s.http.post("/collections/fortress/versions/999/publish").status_code == 404

    # Accepted, then each fails as a document with its own reason.
    failing = {
        "cut.pdf": (PDF.read_bytes()[:3000], "PDF"),
        "long.pdf": (_many_pages(60), "60 pages; the limit is 40"),
        "one-huge-line.txt": (b"word " * 1_000_000, "more than 1500 MiB of memory"),
    }
    # Odd but valid: parsed like any other file.
    odd = {
        "utf16.txt": "Résumé of the travel policy, in UTF-16.\n".encode("utf-16") * 5,
        "shift-jis.txt": "就業規則の概要です。休暇は年二十日です。".encode("shift_jis") * 5,
        "cp1252.html": (EXAMPLE_DOCS / "fake-html-cp1252.html").read_bytes(),
        "one-line.txt": b"word " * 50_000,
        "distilbert.pdf": PDF.read_bytes(),
        "pdf-named.txt": (DATASETS / "pdfminer-samples-subset" / "jo.pdf").read_bytes(),
        "../../etc/evil\x00name.txt": b"Path parts and NUL bytes are stripped from this name.",
        "café ünïcode ☃ 規則.txt": b"Non-ASCII names are kept.",
    }
    accepted: dict[str, str] = {}
    jobs: list[str] = []
    for name, (data, _) in failing.items():
        response = _upload(s, name, data)
        assert response.status_code == 202, (name, response.text)
        accepted[name] = response.json()["documents"][0]["id"]
        jobs.append(response.json()["job_id"])
    for name, data in odd.items():
        response = _upload(s, name, data, "text/plain" if name.endswith(".html") else None)
        assert response.status_code == 202, (name, response.text)
        accepted[name] = response.json()["documents"][0]["id"]
        jobs.append(response.json()["job_id"])
        assert "/" not in response.json()["documents"][0]["filename"]

    def settled() -> dict[str, dict[str, Any]]:
        docs = {n: s.http.get(f"/collections/fortress/documents/{i}").json() for n, i in accepted.items()}
        return docs if all(d["status"] in ("ready", "failed") for d in docs.values()) else {}

    deadline = time.monotonic() + 300
    while not (docs := settled()):
        s.check_alive()
        assert time.monotonic() < deadline, "documents did not settle"
        time.sleep(0.5)
    for name, (_, reason) in failing.items():
        assert docs[name]["status"] == "failed", (name, docs[name])
        assert reason in docs[name]["error"], (name, docs[name]["error"])
    for name in odd:
        assert docs[name]["status"] == "ready", (name, docs[name]["error"])
        assert docs[name]["chunk_count"] > 0

    # The worker lived through it, and version 1 answers exactly as before.
    s.check_alive()
    assert _retrieve(s, 1) == before
    # The build scheduled once the last document settled includes the odd ones and goes live.
    builds = {b for j in jobs if (b := s.wait_job(j)["result"].get("build_job_id"))}
    assert builds
    for build in builds:
        assert s.wait_job(build)["status"] == "succeeded"
    live = s.http.get("/collections/fortress").json()["live_version"]
    assert live > 1 and s.http.post("/query", json={"collection": "fortress", "question": "travel policy"}).is_success
