"""The parser helper process: same chunks as in-process, and a document over the memory limit fails alone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import IngestionConfig
from core.errors import DocumentParseError
from core.filetypes import detect_file_kind
from ingest.partition import partition_document
from ingest.sandbox import ParseSandbox
from tests.conftest import DATASETS, EXAMPLE_DOCS

PDF = DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf"
CONFIG = IngestionConfig()


def _args(path: Path) -> tuple[bytes, str]:
    return path.read_bytes(), path.name


@pytest.fixture
def sandbox() -> Iterator[ParseSandbox]:
    box = ParseSandbox(max_memory_mb=4096, max_pdf_pages=50)
    yield box
    box.close()


def test_the_helper_parses_like_the_worker_would_and_is_reused(sandbox: ParseSandbox) -> None:
    data, name = _args(PDF)
    kind = detect_file_kind(data, name)
    assert sandbox(data, name, kind, CONFIG) == partition_document(data, name, kind, CONFIG)
    pid = sandbox.pid
    text, text_name = _args(EXAMPLE_DOCS / "fake-text.txt")
    assert sandbox(text, text_name, detect_file_kind(text, text_name), CONFIG)
    assert sandbox.pid == pid, "one helper serves every document"
    with pytest.raises(DocumentParseError, match="PDF"):
        sandbox(data[:3000], "cut.pdf", kind, CONFIG)
    assert sandbox.pid == pid, "a parse error is an answer, not a crash"


def test_a_spawned_helper_loads_in_the_background_and_serves_the_first_document(sandbox: ParseSandbox) -> None:
    """A worker process spawns its helper as it starts; its first document no longer starts one."""
    sandbox.spawn()
    pid = sandbox.pid
    assert pid is not None and sandbox.resting_rss_mb == 0.0  # running, not waited for
    sandbox.spawn()
    assert sandbox.pid == pid, "spawning a running helper keeps it"
    text, name = _args(EXAMPLE_DOCS / "fake-text.txt")
    assert sandbox(text, name, detect_file_kind(text, name), CONFIG)
    assert sandbox.pid == pid and sandbox.resting_rss_mb > 50
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):  # until the kernel has reaped it
        if sandbox.pid is None:
            break
        time.sleep(0.05)
    sandbox.spawn()  # a dead helper is replaced
    assert sandbox.pid not in (None, pid)
    assert sandbox(text, name, detect_file_kind(text, name), CONFIG)


def test_a_document_over_the_memory_limit_fails_and_the_next_one_is_parsed(sandbox: ParseSandbox) -> None:
    resting = sandbox.start()
    assert 50 < resting < 1500
    # One 5 MB line of text makes the parser grow by ~3.2 GiB; the PDF by ~50 MiB.
    box = ParseSandbox(max_memory_mb=400)
    try:
        line = b"word " * 1_000_000
        with pytest.raises(DocumentParseError, match=r"more than 400 MiB .*MAX_PARSE_MEMORY_MB"):
            box(line, "line.txt", detect_file_kind(line, "line.txt"), CONFIG)
        assert box.pid is None, "the helper over the limit was killed"
        data, name = _args(PDF)
        assert box(data, name, detect_file_kind(data, name), CONFIG)
        assert box.peak_rss_mb - box.resting_rss_mb <= 400
    finally:
        box.close()


def test_a_helper_that_dies_fails_only_its_document(sandbox: ParseSandbox) -> None:
    text, name = _args(EXAMPLE_DOCS / "fake-text.txt")
    kind = detect_file_kind(text, name)
    assert sandbox(text, name, kind, CONFIG)
    assert sandbox.pid is not None
    os.kill(sandbox.pid, signal.SIGKILL)  # what a segfault in a C extension looks like from outside
    data, pdf_name = _args(PDF)
    with pytest.raises(DocumentParseError, match="parser stopped"):
        sandbox(data, pdf_name, detect_file_kind(data, pdf_name), CONFIG)
    assert sandbox(text, name, kind, CONFIG)
