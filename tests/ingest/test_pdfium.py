"""ingest.pdfium: PDFium's text layer, page count, title and page images, on real PDFs."""

from __future__ import annotations

import pytest

from core.errors import DocumentParseError
from ingest import pdfium
from tests.conftest import DATASETS

PDFS = DATASETS / "unstructured-example-docs" / "files" / "pdf"


def test_text_layer_page_count_and_title_of_a_paper() -> None:
    data = (DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf").read_bytes()
    texts = pdfium.page_texts(data)
    assert len(texts) == pdfium.page_count(data) == 5
    assert "DistilBERT" in texts[0] and "\r" not in texts[0]
    assert all(text.strip() for text in texts)
    assert pdfium.metadata_title(data) is None  # its document information has no Title
    filing = (DATASETS / "financebench-subset" / "source_files" / "PEPSICO_2022_10K.pdf").read_bytes()
    assert pdfium.metadata_title(filing) == "Form 10-K for Pepsico INC filed 02/09/2023"


def test_pages_opens_the_wanted_pages_one_at_a_time_and_renders_them() -> None:
    data = (PDFS / "layout-parser-paper-fast.pdf").read_bytes()
    with pdfium.pages(data, [2]) as each:
        rendered = [(page.number, page.image(72, max_side_px=500)) for page in each]
    assert [number for number, _ in rendered] == [2]
    image = rendered[0][1]
    assert image.mode == "RGB" and max(image.size) == 500 and image.getpixel((0, 0)) == (255, 255, 255)
    with pdfium.pages(data) as each:
        for page in each:  # a loop that stops early leaves nothing open
            assert page.draws_something(1)
            break


def test_a_file_pdfium_cannot_open_is_a_parse_error() -> None:
    for call in (pdfium.page_texts, pdfium.page_count, pdfium.metadata_title):
        with pytest.raises(DocumentParseError, match="cannot be opened"):
            call(b"%PDF-1.7\nthis is not a PDF")
