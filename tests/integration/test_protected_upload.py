"""Protected PDFs and ZIPs over HTTP to a worker: decrypted at upload, found by /query, the password kept nowhere."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import pikepdf
import pytest
import pyzipper
import redis

from tests.conftest import EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

SECRET = "zebra-Quartz-5813-unique"  # a password no document, id or log line could contain by chance


def _locked(source: bytes, password: str) -> bytes:
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(source)) as pdf:
        pdf.save(out, encryption=pikepdf.Encryption(owner=f"{password}-owner", user=password, R=6))
    return out.getvalue()


def _retrieve(s: Stack, question: str, collection: str = "vault") -> list[dict[str, Any]]:
    response = s.http.post("/query", json={"collection": collection, "question": question, "mode": "retrieve"})
    assert response.status_code == 200, response.text
    citations: list[dict[str, Any]] = response.json()["citations"]
    return citations


def _wait_for_documents(s: Stack, count: int, timeout: float = 300, collection: str = "vault") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.check_alive()
        live = s.http.get(f"/collections/{collection}").json().get("live_version")
        if live and s.http.get(f"/collections/{collection}/versions/{live}").json()["document_count"] == count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"no live version with {count} documents in {timeout} s")


def test_protected_pdfs_are_found_by_query_and_their_passwords_are_kept_nowhere(redis_stack: Stack) -> None:
    s = redis_stack
    assert s.http.post("/collections", json={"name": "vault"}).status_code == 201
    password_pdf = (EXAMPLE_DOCS / "pdf" / "password.pdf").read_bytes()
    memo = _locked((EXAMPLE_DOCS / "pdf" / "fake-memo.pdf").read_bytes(), SECRET)

    refused = s.http.post("/collections/vault/documents", files=[("files", ("memo.pdf", memo))])
    assert refused.status_code == 422 and refused.json()["error"] == "PasswordRequired", refused.text
    wrong = s.http.post(
        "/collections/vault/documents", files=[("files", ("memo.pdf", memo))], data={"password": "password"}
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "WrongPassword", wrong.text

    jobs = []
    for name, data, password in (("password.pdf", password_pdf, "password"), ("memo.pdf", memo, SECRET)):
        response = s.http.post(
            "/collections/vault/documents", files=[("files", (name, data))], data={"password": password}
        )
        assert response.status_code == 202, response.text
        jobs.append(response.json()["job_id"])
    for job_id in jobs:
        assert s.wait_job(job_id, timeout=300)["status"] == "succeeded"
    _wait_for_documents(s, 2)

    found = _retrieve(s, "File with password")
    assert found[0]["filename"] == "password.pdf" and "File with password" in found[0]["text"]
    memo_text = " ".join(c["text"] for c in _retrieve(s, "How many trucks delivered the blankets?"))
    assert "A total of 3 trucks were used" in memo_text

    _assert_kept_nowhere(s, SECRET)


def _assert_kept_nowhere(s: Stack, password: str) -> None:
    """The password is nowhere: not in the catalog (documents, jobs, audit log), the blobs, the logs, the broker."""
    secret = password.encode()
    for path in [*s.data_dir.rglob("*"), s.data_dir.parent / "api.log", s.data_dir.parent / "worker.log"]:
        if path.is_file():
            assert secret not in path.read_bytes(), path
    audit = s.http.get("/audit").json()
    assert password not in str(audit) and "documents.upload" in str(audit)
    broker = redis.Redis.from_url(REDIS_URL)
    for key in broker.scan_iter(f"*{s.env['RAGKEEP_QUEUE_PREFIX']}*"):
        kind = broker.type(key)
        values = broker.lrange(key, 0, -1) if kind == b"list" else [broker.dump(key) or b""]
        assert all(secret not in value for value in values), key


def test_encrypted_zips_go_live_with_their_members_and_their_passwords_are_kept_nowhere(redis_stack: Stack) -> None:
    """Regression: the members of a password-protected ZIP were refused even with the archive's password."""
    s = redis_stack
    assert s.http.post("/collections", json={"name": "zipped"}).status_code == 201
    # WinZip AES-256, built here, holding a PDF locked with the same password; and ZipCrypto made by Info-ZIP's zip.
    memo = _locked((EXAMPLE_DOCS / "pdf" / "fake-memo.pdf").read_bytes(), SECRET)
    buffer = io.BytesIO()
    with pyzipper.AESZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(SECRET.encode())
        archive.writestr("memo.pdf", memo)
    aes = buffer.getvalue()
    zipcrypto = (Path(__file__).resolve().parent.parent / "data" / "zipcrypto-infozip.zip").read_bytes()
    zipcrypto_password = "Quartz-zip-5813"  # tests/ingest/test_decrypt.py says how the file was made

    url = "/collections/zipped/documents"
    refused = s.http.post(url, files=[("files", ("memo.zip", aes))])
    assert refused.status_code == 422 and refused.json()["error"] == "PasswordRequired", refused.text
    assert "send the archive's password" in refused.json()["detail"]
    wrong = s.http.post(url, files=[("files", ("memo.zip", aes))], data={"password": zipcrypto_password})
    assert wrong.status_code == 422 and wrong.json()["error"] == "WrongPassword", wrong.text

    jobs = []
    for name, data, password in (("memo.zip", aes, SECRET), ("ledger.zip", zipcrypto, zipcrypto_password)):
        response = s.http.post(url, files=[("files", (name, data))], data={"password": password})
        assert response.status_code == 202 and response.json()["refused"] == [], response.text
        jobs.append(response.json()["job_id"])
    for job_id in jobs:
        assert s.wait_job(job_id, timeout=300)["status"] == "succeeded"
    _wait_for_documents(s, 3, collection="zipped")  # memo.pdf, ledger.txt, policies/leave.md

    memo_text = " ".join(c["text"] for c in _retrieve(s, "How many trucks delivered the blankets?", "zipped"))
    assert "A total of 3 trucks were used" in memo_text
    found = _retrieve(s, "How many crates of saffron did the harbour receive?", "zipped")
    assert found[0]["filename"] == "ledger.txt" and "41 crates of saffron" in found[0]["text"]
    _assert_kept_nowhere(s, SECRET)
    _assert_kept_nowhere(s, zipcrypto_password)
