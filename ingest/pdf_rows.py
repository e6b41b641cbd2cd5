"""Table rows of PDF pages: which pages pdfminer reads column by column, and their tables from PDFium's lines.

pdfminer's layout analysis (Unstructured's ``fast`` strategy) groups text into boxes; a
financial statement often becomes one box of row labels and one box per column of numbers,
so a row label and its numbers land in different chunks. PDFium's text layer keeps each
printed line whole ("Net sales $ 3,226,773 100.0% $ 2,729,388 100.0%").

A page is read from PDFium when most of its table rows (lines of a label followed by numbers
only) are split in pdfminer's text: the label is not followed by the row's first number there.
On such a page, each run of rows becomes a table: its rows with the column-header lines just
above them ("13 Weeks Ended / January 28, January 29, / 2023 2022"), cut into pieces of at
most ``max_characters`` at row boundaries, each piece repeating the headers. The other lines
stay text (headings among them). Pure text: no PDF library here (``ingest.pdfium`` reads the
lines, ``ingest.partition`` makes elements of them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# A table cell: an amount, a percentage, a parenthesised negative, a dash or a lone currency sign.
_CELL = re.compile(r"^(\(?[$€£]?\(?-?\d[\d,]*(\.\d+)?\)?%?\)?|[$€£%]|[\u2014\u2013-]+|\(?\d+(\.\d+)?%\)?)$")
# A page is read from PDFium when it has this many rows and pdfminer splits at least this share of them.
MIN_ROWS = 3
MIN_SPLIT_SHARE = 0.5
# Column headers: up to this many lines right above a table's first row, each at most this long,
# none of them a sentence.
MAX_HEADER_LINES = 4
MAX_HEADER_CHARS = 80
# A line at least this share of the page's longer lines was wrapped: its paragraph goes on.
FULL_LINE_SHARE = 0.8
# A table goes on over at most this many lines that are not rows (sub-headings such as "Basic:").
MAX_GAP_LINES = 1


def row(line: str) -> tuple[str, str] | None:
    """(label, first number) when ``line`` is a table row: a label with letters, then only cells, one a number."""
    tokens = line.split()
    first = next((i for i, token in enumerate(tokens) if _CELL.match(token)), None)
    if not first:  # no cell, or no label before the cells
        return None
    label, cells = " ".join(tokens[:first]), tokens[first:]
    numbers = [cell for cell in cells if any(ch.isdigit() for ch in cell)]
    if sum(ch.isalpha() for ch in label) < 3 or not numbers or not all(_CELL.match(cell) for cell in cells):
        return None
    return label, numbers[0]


def _squeezed(text: str) -> str:
    return re.sub(r"[\s$€£]+", "", text)


def columns_split(pdfium_lines: Sequence[str], pdfminer_text: str) -> bool:
    """Whether pdfminer's text of a page separates most of its rows' labels from their numbers."""
    rows = [found for line in pdfium_lines if (found := row(line))]
    if len(rows) < MIN_ROWS:
        return False
    other = _squeezed(pdfminer_text)
    split = sum(1 for label, number in rows if _squeezed(label) + _squeezed(number) not in other)
    return split >= MIN_SPLIT_SHARE * len(rows)


@dataclass(frozen=True)
class Segment:
    """Lines of a page in reading order: ``text`` lines, or a table piece (``headers`` then ``rows``)."""

    kind: str  # "text" or "table"
    lines: tuple[str, ...]
    headers: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join((*self.headers, *self.lines))


def _is_header(line: str) -> bool:
    return len(line) <= MAX_HEADER_CHARS and not line.rstrip().endswith((".", ";"))


def segments(lines: Sequence[str], max_characters: int) -> list[Segment]:
    """A page's lines as text and table pieces, in order (see the module's docstring)."""
    lines = [line.strip() for line in lines if line.strip()]
    is_row = [row(line) is not None for line in lines]
    tables: list[tuple[int, int]] = []  # [start, end) of runs of rows, with at most MAX_GAP_LINES between rows
    index = 0
    while index < len(lines):
        if not is_row[index]:
            index += 1
            continue
        end = index + 1
        while True:
            following = next((j for j in range(end, min(end + MAX_GAP_LINES + 1, len(lines))) if is_row[j]), None)
            if following is None:
                break
            end = following + 1
        if sum(is_row[index:end]) >= 2:
            tables.append((index, end))
        index = end
    out: list[Segment] = []
    done = 0
    for start, end in tables:
        head = start
        while head > done and start - head < MAX_HEADER_LINES and _is_header(lines[head - 1]):
            head -= 1
        if head > done:
            out.append(Segment("text", tuple(lines[done:head])))
        out += _pieces(tuple(lines[head:start]), lines[start:end], max_characters)
        done = end
    if done < len(lines):
        out.append(Segment("text", tuple(lines[done:])))
    return out


def paragraphs(lines: Sequence[str]) -> list[str]:
    """Text lines joined into paragraphs: a line as long as the page's full lines runs on into the next.

    PDFium gives lines, not paragraphs; a line that fills the text width (at least
    ``FULL_LINE_SHARE`` of the page's longer lines) was wrapped, a shorter one ends its
    paragraph (a heading, a paragraph's last line).
    """
    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        return []
    lengths = sorted(len(line) for line in lines)
    full = lengths[int(0.9 * (len(lengths) - 1))] * FULL_LINE_SHARE
    out: list[list[str]] = [[]]
    for line in lines:
        out[-1].append(line)
        if len(line) < full or line.endswith(":"):
            out.append([])
    return [" ".join(group) for group in out if group]


def _pieces(headers: tuple[str, ...], rows: Sequence[str], max_characters: int) -> list[Segment]:
    """The table cut at row boundaries into pieces of at most ``max_characters``, each with the headers."""
    size = sum(len(h) + 1 for h in headers)
    repeated = headers if size <= max_characters // 2 else ()  # long headers go with the first piece only
    pieces: list[Segment] = []
    current: list[str] = []
    length = size
    for line in rows:
        if current and length + len(line) + 1 > max_characters:
            pieces.append(Segment("table", tuple(current), headers if not pieces else repeated))
            current, length = [], sum(len(h) + 1 for h in repeated)
        current.append(line)
        length += len(line) + 1
    if current:
        pieces.append(Segment("table", tuple(current), headers if not pieces else repeated))
    return pieces
