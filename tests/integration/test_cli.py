"""The ``ragkeep`` CLI as a user runs it: a subprocess talking to a running server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATASETS, EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import ADMIN_KEY, Stack, run_stack
from tests.processes import BIN, child_env, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[Stack]:
    yield from run_stack(
        tmp_path_factory.mktemp("cli-stack"),
        chroma_server,
        {"RAGKEEP_REDIS_URL": REDIS_URL, "RAGKEEP_WORKER__BUILD_DEBOUNCE_S": "0.5"},
    )


def ragkeep(stack: Stack, *args: str, key: str = ADMIN_KEY, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env({"RAGKEEP_URL": url or stack.url, "RAGKEEP_API_KEY": key, "COLUMNS": "200"})
    return subprocess.run([str(BIN / "ragkeep"), *args], env=env, capture_output=True, text=True, timeout=300)


def _folder(root: Path) -> Path:
    """Good files, a hidden one, an empty one, a corrupt PDF and a name that appears twice."""
    docs = root / "docs"
    (docs / "policies").mkdir(parents=True)
    (docs / ".git").mkdir()
    shutil.copy(EXAMPLE_DOCS / "fake-text.txt", docs / "fake-text.txt")
    shutil.copy(EXAMPLE_DOCS / "simple.docx", docs / "policies" / "simple.docx")
    shutil.copy(EXAMPLE_DOCS / "fake-html.html", docs / "policies" / "fake-html.html")
    (docs / ".git" / "config").write_text("[core]\n")
    (docs / ".notes.txt").write_text("hidden notes are not uploaded")
    (docs / "empty.txt").write_bytes(b"")
    pdf = DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf"
    (docs / "cut.pdf").write_bytes(pdf.read_bytes()[:3000])
    (docs / "policies" / "fake-text.txt").write_text("a second file with an existing name")
    return docs


def test_cli_creates_ingests_queries_and_moves_versions(stack: Stack, tmp_path: Path) -> None:
    created = ragkeep(stack, "collections", "create", "manuals", "--owner", "kb@example.com", "--description", "Docs")
    assert created.returncode == 0, created.stderr
    assert "created collection manuals" in created.stdout
    listed = ragkeep(stack, "collections", "list", "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["manuals"]
    assert "manuals" in ragkeep(stack, "collections", "list").stdout

    docs = _folder(tmp_path)
    ingested = ragkeep(stack, "ingest", str(docs), "-c", "manuals", "--batch-size", "3")
    # Failures make the exit code non-zero, and the summary names each one with its reason.
    assert ingested.returncode == 1, ingested.stdout + ingested.stderr
    summary = ingested.stdout
    assert "manuals: 1 failed, 3 parsed, 2 rejected" in summary, summary
    assert "failed: " in summary and "cut.pdf" in summary
    assert "rejected: " + str(docs / "empty.txt") in summary and "empty" in summary.lower()
    assert "same filename as " + str(docs / "fake-text.txt") in summary
    assert "version v1 is live" in summary
    # Each file reported its own outcome as it finished.
    assert "ok " + str(docs / "policies" / "simple.docx") in ingested.stderr
    stored = {d["filename"]: d["status"] for d in stack.http.get("/collections/manuals/documents").json()["items"]}
    assert stored == {"fake-text.txt": "ready", "simple.docx": "ready", "fake-html.html": "ready", "cut.pdf": "failed"}
    assert stack.http.get("/collections/manuals/documents/x").status_code == 404

    # The default config (abstain: auto) answers: the phrase is in fake-html.html.
    asked = ragkeep(stack, "query", "Who comes home under the sun?", "-c", "manuals", "--top-k", "2")
    assert asked.returncode == 0, asked.stderr
    assert "the cow comes home under the sun" in asked.stdout
    assert re.search(r"^\[\d\] fake-(text\.txt|html\.html) \(score 0\.\d{3}\): ", asked.stdout, re.M), asked.stdout
    assert "manuals v1 · extractive" in asked.stdout
    retrieved = json.loads(ragkeep(stack, "query", "simple", "-c", "manuals", "--retrieve", "--json").stdout)
    assert retrieved["answer_mode"] == "none" and retrieved["citations"]

    # Repeating the upload changes nothing; changing one file makes v2.
    (docs / "cut.pdf").unlink()
    (docs / "empty.txt").unlink()
    (docs / "policies" / "fake-text.txt").unlink()
    again = ragkeep(stack, "ingest", str(docs), "-c", "manuals")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "manuals: 3 unchanged" in again.stdout and "no new version" in again.stdout
    (docs / "fake-text.txt").write_text("This revised text is about hiking boots and their care.\n" * 20)
    changed = ragkeep(stack, "ingest", str(docs / "fake-text.txt"), "-c", "manuals")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "version v2 is live" in changed.stdout

    versions = json.loads(ragkeep(stack, "versions", "list", "-c", "manuals", "--json").stdout)
    assert [(v["number"], v["state"]) for v in versions] == [(2, "live"), (1, "archived")]
    assert "v2" in ragkeep(stack, "versions", "list", "-c", "manuals").stdout
    rolled = ragkeep(stack, "versions", "rollback", "-c", "manuals")
    assert rolled.returncode == 0 and "rolled back to v1" in rolled.stdout
    assert stack.http.get("/collections/manuals").json()["live_version"] == 1
    published = ragkeep(stack, "versions", "publish", "-c", "manuals", "2")
    assert published.returncode == 0 and "manuals v2 is live" in published.stdout
    assert stack.http.get("/collections/manuals").json()["live_version"] == 2


def test_cli_errors_are_one_readable_line_with_an_exit_code(stack: Stack, tmp_path: Path) -> None:
    missing = ragkeep(stack, "query", "anything", "-c", "no-such-kb")
    assert missing.returncode == 1 and "404 CollectionNotFound" in missing.stderr
    assert "Traceback" not in missing.stderr
    ingest_missing = ragkeep(stack, "ingest", str(EXAMPLE_DOCS / "fake-text.txt"), "-c", "no-such-kb")
    assert ingest_missing.returncode == 1 and "404 CollectionNotFound" in ingest_missing.stderr

    reader = stack.http.post("/keys", json={"name": "cli-reader", "role": "reader", "collections": "*"}).json()["key"]
    refused = ragkeep(stack, "collections", "create", "nope", key=reader)
    assert refused.returncode == 1 and refused.stderr.startswith("403 ")
    bad_key = ragkeep(stack, "collections", "list", key="rk_not-a-key")
    assert bad_key.returncode == 1 and bad_key.stderr.startswith("401 ")

    nowhere = ragkeep(stack, "collections", "list", url=f"http://127.0.0.1:{free_port()}")
    assert nowhere.returncode == 2 and "cannot reach ragkeep" in nowhere.stderr
    (tmp_path / "empty-dir").mkdir()
    nothing = ragkeep(stack, "ingest", str(tmp_path / "empty-dir"), "-c", "manuals")
    assert nothing.returncode == 2 and "no files found" in nothing.stderr


def test_cli_ingest_sends_the_password_of_protected_files(stack: Stack, tmp_path: Path) -> None:
    """One password per run (option or RAGKEEP_UPLOAD_PASSWORD); a file it does not open is rejected alone."""
    assert stack.http.post("/collections", json={"name": "locked"}).status_code == 201
    docs = tmp_path / "locked"
    docs.mkdir()
    shutil.copy(EXAMPLE_DOCS / "pdf" / "password.pdf", docs / "password.pdf")  # password "password"
    shutil.copy(EXAMPLE_DOCS / "password_protected.xlsx", docs / "locked.xlsx")  # password "123"
    shutil.copy(EXAMPLE_DOCS / "fake-text.txt", docs / "fake-text.txt")

    without = ragkeep(stack, "ingest", str(docs), "-c", "locked", "--no-wait")
    assert without.returncode == 1, without.stdout + without.stderr
    assert "rejected: " + str(docs / "password.pdf") + ": 422 PasswordRequired" in without.stdout, without.stdout
    assert "rejected: " + str(docs / "locked.xlsx") + ": 422 PasswordRequired" in without.stdout
    assert "1 parsing" in without.stdout  # the batch was retried file by file: the text file went in

    env = child_env({"RAGKEEP_URL": stack.url, "RAGKEEP_API_KEY": ADMIN_KEY, "RAGKEEP_UPLOAD_PASSWORD": "password"})
    with_env = subprocess.run(
        [str(BIN / "ragkeep"), "ingest", str(docs), "-c", "locked"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = with_env.stdout
    assert with_env.returncode == 1, summary + with_env.stderr
    assert "rejected: " + str(docs / "locked.xlsx") + ": 422 WrongPassword" in summary, summary
    assert "locked: 1 parsed, 1 rejected, 1 unchanged" in summary, summary
    by_option = ragkeep(stack, "ingest", str(docs / "locked.xlsx"), "-c", "locked", "--password", "123")
    assert by_option.returncode == 0 and "locked: 1 parsed" in by_option.stdout, by_option.stdout + by_option.stderr
    stored = {d["filename"]: d["status"] for d in stack.http.get("/collections/locked/documents").json()["items"]}
    assert stored == {"password.pdf": "ready", "locked.xlsx": "ready", "fake-text.txt": "ready"}
