"""Contextual chunk headers: what is embedded and BM25-indexed carries the document's context."""

from __future__ import annotations

import numpy as np
import pytest
from chromadb.api import ClientAPI
from sqlalchemy.orm import Session

from core import catalog
from core.blobs import BlobStore
from core.bm25 import BM25Index
from core.config import CollectionConfig, IngestionConfig
from core.embedding import Embedder
from core.filetypes import detect_file_kind
from ingest.context import header, indexed_text
from ingest.partition import document_title, filename_words, partition_document
from tests.conftest import DATASETS, EXAMPLE_DOCS
from tests.ingest.test_pipeline import _add, _build, embedder, env  # noqa: F401  (fixtures)

FILINGS = DATASETS / "financebench-subset" / "source_files"


def test_filenames_read_as_words() -> None:
    assert filename_words("PEPSICO_2022_10K.pdf") == "PEPSICO 2022 10K"
    assert filename_words("reports/AMCOR_2022_8K_dated-2022-07-01.pdf") == "AMCOR 2022 8K dated 2022 07 01"
    assert filename_words("README") == "README"


def test_the_header_names_the_document_its_file_and_the_headings_above() -> None:
    metadata = {"document_title": "FORM 8-K", "section": "Item 2.02", "section_path": "Part I > Item 2.02"}
    assert header(metadata, "AMCOR_2022_8K.pdf", "title_section") == (
        "Document: FORM 8-K (AMCOR 2022 8K)\nSection: Part I > Item 2.02"
    )
    assert header(metadata, "AMCOR_2022_8K.pdf", "title") == "Document: FORM 8-K (AMCOR 2022 8K)"
    assert header(metadata, "AMCOR_2022_8K.pdf", "off") == ""
    # A title that already holds the file's name does not repeat it; chunks cached before
    # titles were recorded fall back to the file name and the nearest heading.
    assert (
        header({"document_title": "Amcor 2022 8K report"}, "amcor_2022_8K.pdf", "title")
        == "Document: Amcor 2022 8K report"
    )
    assert header({"section": "Leave"}, "hr_handbook.docx", "title_section") == "Document: hr handbook\nSection: Leave"
    assert indexed_text("Total revenue 13,507", {}, "x.txt", "off") == "Total revenue 13,507"
    marked = {"company": "Acme", "quarter": "2023Q2", "other": "x"}
    assert header(marked, "q.pdf", "title", ["company", "quarter", "missing"]) == (
        "Document: q\ncompany: Acme\nquarter: 2023Q2"
    )


def test_titles_come_from_file_metadata_then_the_first_heading_then_the_file_name() -> None:
    name = "PEPSICO_2023_8K_dated-2023-05-05.pdf"
    data = (FILINGS / name).read_bytes()
    chunks = partition_document(data, name, detect_file_kind(data, name), IngestionConfig())
    assert {c.metadata["document_title"] for c in chunks} == {
        "Form 8-K for Pepsico INC filed 05/05/2023"
    }  # the PDF's Info
    docx = (EXAMPLE_DOCS / "category-level.docx").read_bytes()
    chunks = partition_document(docx, "category-level.docx", detect_file_kind(docx, "x.docx"), IngestionConfig())
    assert chunks[0].metadata["document_title"] == "A Heading 1"  # no core-properties title: the first heading
    assert document_title(b"plain words", "hr_leave-policy.txt", detect_file_kind(b"plain words", "a.txt"), []) == (
        "hr leave policy"
    )


def test_a_plain_text_file_is_titled_by_its_first_line_when_it_is_a_short_one() -> None:
    titled = b"Folate and vitamin B6 in relation to coronary heart disease.\n\nWe studied 80,082 women over 14 years."
    chunks = partition_document(titled, "4983.txt", detect_file_kind(titled, "4983.txt"), IngestionConfig())
    assert {c.metadata["document_title"] for c in chunks} == {
        "Folate and vitamin B6 in relation to coronary heart disease."
    }
    untitled = ("A first paragraph that runs on. " * 10 + "\n\n" + "And a second one that runs on. " * 10).encode()
    chunks = partition_document(untitled, "leave_policy.txt", detect_file_kind(untitled, "x.txt"), IngestionConfig())
    assert {c.metadata["document_title"] for c in chunks} == {"leave policy"}  # a long first paragraph is no title


def test_section_paths_follow_the_heading_hierarchy() -> None:
    data = (EXAMPLE_DOCS / "category-level.docx").read_bytes()
    chunks = partition_document(data, "category-level.docx", detect_file_kind(data, "x.docx"), IngestionConfig())
    paths = [c.metadata["section_path"] for c in chunks]
    assert "A Heading 1 > A Heading 2" in paths and "Another Heading 1" in paths
    assert all(" > " not in str(c.metadata["section"]) for c in chunks)


@pytest.mark.parametrize("mode", ["title_section", "off"])
def test_a_version_embeds_and_indexes_the_context_and_cites_the_chunk_alone(
    env: tuple[Session, BlobStore, ClientAPI],  # noqa: F811
    embedder: Embedder,  # noqa: F811
    mode: str,
) -> None:
    session, blobs, client = env
    config = CollectionConfig(ingestion=IngestionConfig(context=mode))  # type: ignore[arg-type]
    collection = catalog.create_collection(session, f"context-{mode.replace('_', '-')}", "", [], config)
    _add(session, blobs, embedder, collection, [EXAMPLE_DOCS / "fake-text.txt"])
    version = _build(session, client, blobs, embedder, collection)
    stored = client.get_collection(version.chroma_collection).get(include=["documents", "embeddings", "metadatas"])
    text, metadata = stored["documents"][0], stored["metadatas"][0]
    assert not text.startswith("Document:"), "citations show the chunk's own text"
    expected = embedder.embed([indexed_text(text, metadata, "fake-text.txt", mode)])[0]  # type: ignore[arg-type]
    assert np.allclose(np.asarray(stored["embeddings"][0]), expected, atol=1e-4)
    bm25 = BM25Index.loads(blobs.get(collection.id, str(version.bm25_sha256)))
    # "fake" is in the file's name, not in its text: only the header makes BM25 find it.
    assert "fake" not in text.lower()
    assert bool(bm25.search("fake", 5)) == (mode != "off")


def test_a_version_is_never_a_delta_of_one_indexed_with_other_context() -> None:
    """A version built before context headers existed has no "context" in its config: its
    vectors are of the bare chunks, so a new version cannot read it as its base."""
    from ingest.pipeline import _context_of

    assert _context_of({}) == ("off", [])
    new = IngestionConfig().model_dump(mode="json")
    assert _context_of(new) == ("title_section", [])
    assert _context_of({**new, "context_metadata": ["company"]}) != _context_of(new)
