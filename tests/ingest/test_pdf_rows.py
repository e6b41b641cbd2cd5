"""ingest.pdf_rows: table rows, pages pdfminer reads column by column, tables cut with their headers.

The lines are Ulta Beauty's statement of income as PDFium reads it, and as pdfminer reads it
(``ULTABEAUTY_2023Q4_EARNINGS.pdf`` in financebench-subset, page 6; tests/ingest/test_table_rows.py
parses the real file).
"""

from __future__ import annotations

from core.config import IngestionConfig
from ingest import pdf_rows

PDFIUM = """Exhibit 1
Ulta Beauty, Inc.
Consolidated Statements of Income
(In thousands, except per share data)
13 Weeks Ended
January 28, January 29,
2023 2022
(Unaudited) (Unaudited)
Net sales $ 3,226,773 100.0% $ 2,729,388 100.0%
Cost of sales 2,014,270 62.4% 1,702,059 62.4%
Gross profit 1,212,503 37.6% 1,027,329 37.6%
Interest (income) expense, net (4,378) (0.1%) 467 0.1%
Net income $ 340,751 10.6% $ 289,366 10.6%
Net income per common share:
Basic $ 6.73 $ 5.44
Diluted $ 6.68 $ 5.41
The quarter ended as expected.""".splitlines()
PDFMINER_COLUMNS = (
    "Net sales Cost of sales Gross profit Interest (income) expense, net Net income "
    "$ 3,226,773 2,014,270 1,212,503 (4,378) $ 340,751 100.0% 62.4% 37.6% (0.1%) 10.6%"
)
PDFMINER_ROWS = "\n".join(PDFIUM)


def test_a_row_is_a_label_followed_by_cells_only() -> None:
    assert pdf_rows.row("Net sales $ 3,226,773 100.0% $ 2,729,388 100.0%") == ("Net sales", "3,226,773")
    assert pdf_rows.row("Interest (income) expense, net (4,378) (0.1%) 467 0.1%") == (
        "Interest (income) expense, net",
        "(4,378)",
    )
    assert pdf_rows.row("Accrued income taxes — 12,786") == ("Accrued income taxes", "12,786")
    for line in ("2023 2022", "13 Weeks Ended", "Net income per common share:", "See Note 4 for details", "$ 12"):
        assert pdf_rows.row(line) is None, line


def test_a_page_is_read_again_only_when_pdfminer_splits_most_rows() -> None:
    assert pdf_rows.columns_split(PDFIUM, PDFMINER_COLUMNS)
    assert not pdf_rows.columns_split(PDFIUM, PDFMINER_ROWS)
    assert not pdf_rows.columns_split(["Revenue 12", "A paragraph of text."], ""), "too few rows to tell"


def test_tables_keep_their_rows_and_column_headers_in_every_piece() -> None:
    whole = pdf_rows.segments(PDFIUM, 1000)
    assert [s.kind for s in whole] == ["text", "table", "text"]
    assert whole[0].lines == tuple(PDFIUM[:4]), "headings before the column headers stay text"
    assert whole[1].headers == tuple(PDFIUM[4:8])
    assert whole[1].lines == tuple(PDFIUM[8:16]), "a sub-heading between rows stays in the table"
    assert whole[2].lines == (PDFIUM[16],)
    pieces = [s for s in pdf_rows.segments(PDFIUM, 200) if s.kind == "table"]
    assert len(pieces) > 2 and all(len(p.text) <= 200 for p in pieces)
    assert all(p.headers == tuple(PDFIUM[4:8]) for p in pieces), "every piece repeats the column headers"
    assert [line for p in pieces for line in p.lines] == PDFIUM[8:16], "no row lost, none cut"


def test_chunks_cached_before_the_option_keep_their_parse_hash() -> None:
    """Chunks parsed before ``pdf_tables`` existed were pdfminer's: cached under this hash, they are reused."""
    assert IngestionConfig(pdf_tables="pdfminer").parse_hash() == "73b41e2080b83722"
    assert IngestionConfig().parse_hash() != "73b41e2080b83722", "the new default parses PDFs again"
    assert IngestionConfig.recorded({"max_characters": 1000}).pdf_tables == "pdfminer", "a version built before"
    assert IngestionConfig.recorded(IngestionConfig().model_dump()).pdf_tables == "pdfium_rows"
