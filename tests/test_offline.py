"""With the network cut (a fresh network namespace), the whole ingest path still works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import DATASETS, EXAMPLE_DOCS, TESTS

ROOT = TESTS.parent

SCRIPT = textwrap.dedent(
    f"""
    import core, tiktoken
    from core.config import IngestionConfig
    from core.filetypes import detect_file_kind
    from core.embedding import Embedder
    from ingest.partition import partition_document
    from llama_index.vector_stores.chroma import ChromaVectorStore  # noqa: F401
    import ragas  # noqa: F401  (its analytics must not be attempted)

    texts = []
    for path in [{str(EXAMPLE_DOCS / "simple.docx")!r}, {str(EXAMPLE_DOCS / "fake-html.html")!r},
                 {str(DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf")!r}]:
        data = open(path, "rb").read()
        chunks = partition_document(data, path, detect_file_kind(data, path), IngestionConfig())
        texts += [c.text for c in chunks]
    vectors = Embedder().embed(texts)
    assert vectors.shape == (len(texts), 384), vectors.shape
    assert tiktoken.get_encoding("cl100k_base").encode("offline")
    print("OFFLINE-OK", len(texts))
    """
)


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"]).returncode == 0


@pytest.mark.slow
def test_ingest_path_runs_without_any_network() -> None:
    if not _can_unshare():
        pytest.skip("this machine does not allow a new network namespace (unshare -n)")
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "OFFLINE-OK" in result.stdout
