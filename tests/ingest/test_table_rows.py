"""Issue 16, item 4: a table row's numbers stay in one chunk with their row label and column headers.

One real filing from ../shared/datasets/financebench-subset: Ulta Beauty's fourth-quarter
fiscal 2022 earnings release (9 pages), whose page 6 holds the consolidated statements of
income for the 13 and 52 weeks ended January 28, 2023, parsed by the default ingestion config.

Before ``ingestion.pdf_tables`` (``pdfium_rows`` by default) the rows were split (``SPLIT_BEFORE``);
with ``pdfminer`` they still are, which the last test checks so that the others test something.
"""

from __future__ import annotations

import pytest

from core.config import IngestionConfig
from core.filetypes import detect_file_kind
from ingest.partition import Chunk, partition_document
from tests.conftest import DATASETS

FILING = DATASETS / "financebench-subset" / "source_files" / "ULTABEAUTY_2023Q4_EARNINGS.pdf"

pytestmark = pytest.mark.skipif(not FILING.is_file(), reason=f"{FILING} is not there (financebench-subset)")

# (row label, the row's numbers, the column headers above them), as the statement prints them.
QUARTER = ("13 Weeks Ended", "January 28,", "January 29,")
YEAR = ("52 Weeks Ended", "January 28,", "January 29,")
ROWS = {
    "net sales, quarter": ("Net sales", ("3,226,773", "2,729,388"), QUARTER),
    "gross profit, quarter": ("Gross profit", ("1,212,503", "1,027,329"), QUARTER),
    "net income, quarter": ("Net income", ("340,751", "289,366"), QUARTER),
    "net sales, year": ("Net sales", ("10,208,580", "8,630,889"), YEAR),
    "operating income, year": ("Operating income", ("1,638,610", "1,297,492"), YEAR),
}

SPLIT_BEFORE = (
    "Unstructured's fast strategy (pdfminer layout analysis) reads the statement column by column: "
    "the row labels of page 6 land in one text block ('Net sales Cost of sales / Gross profit / ...') and "
    "so in chunks 24-26, the numbers of each column in another ('$ 3,226,773 2,014,270 1,212,503') under "
    "their column headers in chunks 27-28. No chunk holds a label with its numbers. PDFium's text layer "
    "keeps the rows ('Net sales $ 3,226,773 100.0% $ 2,729,388 100.0%')."
)


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    data = FILING.read_bytes()
    return partition_document(data, FILING.name, detect_file_kind(data, FILING.name), IngestionConfig())


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_statement_is_parsed_with_its_labels_numbers_and_headers(chunks: list[Chunk]) -> None:
    """Nothing is lost: every label, number and header of the rows is in some chunk of the filing."""
    text = _flat(" ".join(c.text for c in chunks))
    for label, numbers, headers in ROWS.values():
        for piece in (label, *numbers, *headers):
            assert _flat(piece) in text, piece


@pytest.mark.parametrize("row", list(ROWS))
def test_a_row_label_its_numbers_and_column_headers_share_a_chunk(chunks: list[Chunk], row: str) -> None:
    label, numbers, headers = ROWS[row]
    holding = [_flat(c.text) for c in chunks if label in c.text]
    assert holding, f"no chunk holds {label!r}"
    together = [t for t in holding if all(_flat(p) in t for p in (*numbers, *headers))]
    assert together, (
        f"{label!r} is in {len(holding)} chunks, none of which also holds {numbers} and {headers}; "
        f"the numbers are in chunks {[i for i, c in enumerate(chunks) if numbers[0] in c.text]}"
    )


def test_pdfminers_reading_splits_the_rows() -> None:
    """The option's other value reads as versions built before it: labels and numbers apart (``SPLIT_BEFORE``)."""
    data = FILING.read_bytes()
    chunks = partition_document(
        data, FILING.name, detect_file_kind(data, FILING.name), IngestionConfig(pdf_tables="pdfminer")
    )
    label, numbers, _ = ROWS["net sales, quarter"]
    assert not [c for c in chunks if label in c.text and numbers[0] in c.text], SPLIT_BEFORE


def test_the_tables_chunks_keep_the_documents_title_and_a_section(chunks: list[Chunk]) -> None:
    label, numbers, _ = ROWS["net sales, quarter"]
    (table,) = [c for c in chunks if label in c.text and numbers[0] in c.text]
    assert table.metadata["page"] == 6 and "Table" in str(table.metadata["element_types"])
    assert table.metadata["section_path"], "the headings above the statement are its section"
    assert {c.metadata["document_title"] for c in chunks} == {chunks[0].metadata["document_title"]}
