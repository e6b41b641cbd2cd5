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


def test_document_languages_are_langdetects_own_from_the_rust_port() -> None:
    """Chunks carry langdetect's languages, computed by langdetect-rs with the same probabilities."""
    import langdetect
    import langdetect_rs
    import unstructured.partition.common.lang as lang

    japanese = sorted((DATASETS / "jsquad-v1.3-valid" / "source_files").glob("*.txt"))[0]
    english = DATASETS / "llamaindex-blockchain-solana" / "README.md"
    assert _parse(japanese)[0].metadata["languages"] == "jpn"
    assert _parse(english)[0].metadata["languages"] == "eng"
    assert lang.detect_langs is langdetect_rs.detect_langs  # type: ignore[attr-defined] # partition_document switched unstructured to it
    for path in (japanese, english, EXAMPLE_DOCS / "fake-text.txt"):
        text = path.read_text(encoding="utf-8")[:3000]
        langdetect.DetectorFactory.seed = langdetect_rs.DetectorFactory.seed = 0
        expected = [(str(x.lang), x.prob) for x in langdetect.detect_langs(text)]
        assert [(str(x.lang), x.prob) for x in langdetect_rs.detect_langs(text)] == expected


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


def _pdf_with_large_array(lines: list[str], array_items: int = 150_000) -> bytes:
    """A valid one-page PDF whose catalog holds an array longer than pypdf's safety limit (100,000).

    Such arrays occur in real filings (long /Kids, /Widths or structure arrays).
    """
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R /Extra [" + " 0" * array_items + " ] >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        " /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


FILING = ["Acme Corp quarterly report, second quarter 2023.", "Total revenue was 13,507 million dollars."]


def test_a_pdf_past_pypdfs_array_limit_is_parsed() -> None:
    """Regression (issue 16): valid filings failed with pypdf's "LimitReachedError: Reached maximum
    array element count" from the page-count check; the page count now falls back to PDFium."""
    data = _pdf_with_large_array(FILING)
    chunks = partition_document(data, "filing.pdf", detect_file_kind(data, "filing.pdf"), CONFIG, max_pdf_pages=40)
    assert "Total revenue was 13,507 million dollars." in " ".join(c.text for c in chunks)
    with pytest.raises(DocumentParseError, match="the limit is 0"):
        partition_document(data, "filing.pdf", detect_file_kind(data, "filing.pdf"), CONFIG, max_pdf_pages=0)


def test_a_pdf_unstructured_cannot_read_is_read_from_pdfiums_text_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the fast partition fails (any parser error) or finds no text, PDFium reads the text
    layer before the document is failed; the chunks say which parser produced them."""
    import ingest.partition as partition

    data = _pdf_with_large_array(FILING, array_items=10)

    def refuse(*_: object) -> list[object]:
        raise DocumentParseError(
            "could not parse the PDF file (LimitReachedError: Reached maximum array element count)"
        )

    for broken in (refuse, lambda *_: []):
        monkeypatch.setattr(partition, "_elements", broken)
        chunks = partition_document(data, "filing.pdf", detect_file_kind(data, "filing.pdf"), CONFIG)
        assert "13,507" in " ".join(c.text for c in chunks)
        assert {(c.metadata["parser"], c.metadata["page"]) for c in chunks} == {("pdfium", 1)}
    encrypted = DocumentParseError("the PDF is password-protected or encrypted; upload a decrypted copy")
    monkeypatch.setattr(partition, "_elements", lambda *_: (_ for _ in ()).throw(encrypted))
    with pytest.raises(DocumentParseError, match="password-protected"):
        partition_document(data, "filing.pdf", detect_file_kind(data, "filing.pdf"), CONFIG)


def test_a_pdf_without_a_text_layer_still_fails_with_its_reason() -> None:
    data = _pdf_with_large_array([], array_items=10)
    with pytest.raises(DocumentParseError, match="no text could be extracted"):
        partition_document(data, "blank.pdf", detect_file_kind(data, "blank.pdf"), CONFIG)
