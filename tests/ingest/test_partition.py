"""Unstructured parsing and chunking over real files from ../shared/datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import IngestionConfig
from core.errors import DocumentParseError, RagkeepError
from core.filetypes import detect_file_kind
from ingest.partition import partition_document
from tests.conftest import DATASETS, EXAMPLE_DOCS

CONFIG = IngestionConfig()
FLAT = (str, int, float, bool, type(None))


def _parse(path: Path, config: IngestionConfig = CONFIG) -> list:  # type: ignore[type-arg]
    data = path.read_bytes()
    return partition_document(data, path.name, detect_file_kind(data, path.name), config)


def _accepted_example_docs() -> list[Path]:
    """Every example file the upload check accepts (the rest are refused with 415/422 at upload)."""
    accepted = []
    for path in sorted(p for p in EXAMPLE_DOCS.rglob("*") if p.is_file()):
        try:
            detect_file_kind(path.read_bytes(), path.name)
        except RagkeepError:
            continue
        if path.stat().st_size < 2_000_000:  # the 619-page PDF alone takes 70 s
            accepted.append(path)
    return accepted


@pytest.mark.slow
@pytest.mark.parametrize("path", _accepted_example_docs(), ids=lambda p: str(p.relative_to(EXAMPLE_DOCS)))
def test_every_accepted_example_doc_parses_or_fails_with_a_reason(path: Path) -> None:
    try:
        chunks = _parse(path)
    except DocumentParseError as exc:
        assert exc.detail and "Traceback" not in exc.detail
        return
    assert chunks
    for chunk in chunks:
        assert chunk.text.strip()
        assert len(chunk.text) <= CONFIG.max_characters
        assert chunk.metadata["filename"] == path.name
        assert all(isinstance(v, FLAT) for v in chunk.metadata.values()), "Chroma needs flat metadata"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fake-text.txt", "This is a test document"),
        ("simple.docx", "favorite things"),
        ("fake-power-point.pptx", "Bullet Slide"),
        ("stanley-cups.xlsx", "Stanley"),
        ("fake-email.msg", "test email"),
        ("fake-email.eml", "test email"),
        ("fake-html.html", "My First Heading"),
        ("README.md", "Example Docs"),
        ("stanley-cups.csv", "Blues"),
        ("simple.json", "favorite things"),
        ("fake-text-utf-16-be.txt", "test document"),
        ("fake-html-cp1252.html", ""),
    ],
)
def test_each_supported_format_yields_its_text(name: str, expected: str) -> None:
    text = "\n".join(c.text for c in _parse(EXAMPLE_DOCS / name))
    assert expected in text


def test_pdf_chunks_carry_page_and_section() -> None:
    chunks = _parse(DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf")
    assert len(chunks) > 10
    pages = [c.metadata["page"] for c in chunks]
    assert pages[0] == 1 and max(p for p in pages if p) > 3
    assert any(c.metadata["section"] for c in chunks)
    assert all("NarrativeText" in c.metadata["element_types"] or c.metadata["element_types"] for c in chunks)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", sorted((DATASETS / "aragog-arxiv-qa" / "source_files").glob("*.pdf")), ids=lambda p: p.name
)
def test_arxiv_pdfs_parse_into_bounded_chunks(path: Path) -> None:
    chunks = _parse(path)
    assert len(chunks) >= 10
    assert max(len(c.text) for c in chunks) <= CONFIG.max_characters


def test_japanese_text_is_chunked() -> None:
    path = sorted((DATASETS / "jsquad-v1.3-valid" / "source_files").glob("*.txt"))[0]
    chunks = _parse(path)
    assert chunks and all(len(c.text) <= CONFIG.max_characters for c in chunks)
    original = path.read_text(encoding="utf-8")
    assert chunks[0].text[:20].replace("\n", "") in original.replace("\n", "")


def test_japanese_pdf_keeps_its_script() -> None:
    text = "".join(c.text for c in _parse(DATASETS / "pdfminer-samples-subset" / "jo.pdf")).replace(" ", "")
    assert "宮澤賢治" in text


@pytest.mark.parametrize("name", ["aes-256.pdf", "rc4-40.pdf"])
def test_encrypted_pdf_fails_with_a_readable_reason(name: str) -> None:
    with pytest.raises(DocumentParseError, match="password-protected"):
        _parse(DATASETS / "pdfminer-samples-subset" / "encryption" / name)


def test_encrypted_xlsx_fails_with_a_readable_reason() -> None:
    with pytest.raises(DocumentParseError, match="password-protected"):
        _parse(EXAMPLE_DOCS / "password_protected.xlsx")


def test_partly_corrupt_pdf_yields_what_is_readable() -> None:
    chunks = _parse(DATASETS / "pdfminer-samples-subset" / "zen_of_python_corrupted.pdf")
    assert "Beautiful is better than" in " ".join(c.text for c in chunks)


def test_truncated_pdf_fails_alone_with_a_reason(tmp_path: Path) -> None:
    data = (DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf").read_bytes()[:2000]
    with pytest.raises(DocumentParseError) as info:
        partition_document(data, "cut.pdf", detect_file_kind(data, "cut.pdf"), CONFIG)
    assert "PDF" in info.value.detail


def test_chunk_size_follows_the_config() -> None:
    path = EXAMPLE_DOCS / "book-war-and-peace-1p.txt"
    small = _parse(path, IngestionConfig(max_characters=300, new_after_n_chars=250))
    large = _parse(path, IngestionConfig(max_characters=2000, new_after_n_chars=1500))
    assert len(small) > len(large)
    assert max(len(c.text) for c in small) <= 300


def test_sentence_splitter_is_a_config_choice() -> None:
    chunks = _parse(EXAMPLE_DOCS / "book-war-and-peace-1p.txt", IngestionConfig(chunker="sentence", max_characters=400))
    assert len(chunks) > 3


def test_pdf_over_the_page_limit_fails_with_a_reason() -> None:
    path = DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf"
    data = path.read_bytes()
    with pytest.raises(DocumentParseError, match="the PDF has 5 pages; the limit is 2"):
        partition_document(data, path.name, detect_file_kind(data, path.name), CONFIG, max_pdf_pages=2)
    assert partition_document(data, path.name, detect_file_kind(data, path.name), CONFIG, max_pdf_pages=5)


def test_paragraphs_are_classified_with_sentences_and_parts_of_speech() -> None:
    """Short lines are titles unless the tagger finds a verb; multi-sentence paragraphs are narrative."""
    from unstructured.partition.text import partition_text

    from ingest.partition import _prepare_unstructured

    _prepare_unstructured()  # what partition_document does first
    text = (
        "Annual Budget Committee Report\n\n"
        "The committee approved the budget\n\n"
        "Spending rose in every department. Revenue fell in the second half. Reserves covered the gap."
    )
    categories = [element.category for element in partition_text(text=text)]
    assert categories == ["Title", "NarrativeText", "NarrativeText"]
