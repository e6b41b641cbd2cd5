"""PDFium (``pypdfium2``): a PDF's text layer, page count, metadata title, and pages rendered for OCR.

The only module that imports ``pypdfium2`` (``tests/test_project.py`` holds the rule). PDFium
opens valid files that pdfminer or pypdf refuse at their safety limits, and its text layer
keeps a table's rows together (pdfminer often reads a financial statement column by column).
Every function opens the document itself and closes it, and works one page at a time.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from core.errors import DocumentParseError

if TYPE_CHECKING:
    import pypdfium2
    from PIL import Image


@contextmanager
def _open(data: bytes) -> Iterator[pypdfium2.PdfDocument]:
    """The PDF as a PDFium document, closed afterwards; one that PDFium cannot open is a parse error."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise DocumentParseError(f"the PDF cannot be opened ({exc})") from exc
    try:
        yield document
    finally:
        document.close()


class Page:
    """One open page (valid inside ``pages``): its text layer, what it draws, its pixels."""

    def __init__(self, page: pypdfium2.PdfPage, number: int) -> None:
        self._page = page
        self.number = number  # 1-based

    def text(self) -> str:
        """The page's text layer as PDFium extracts it, with ``\\n`` line ends (empty for a scanned page)."""
        textpage = self._page.get_textpage()
        try:
            raw = str(textpage.get_text_range())
        finally:
            textpage.close()
        return raw.replace("\r\n", "\n").replace("\r", "\n")

    def draws_something(self, min_paths: int) -> bool:
        """Whether the page draws an image, or at least ``min_paths`` vector paths (text turned to outlines)."""
        import pypdfium2.raw as pdfium_c

        paths = 0
        for item in self._page.get_objects(max_depth=3):
            if item.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                return True
            if item.type == pdfium_c.FPDF_PAGEOBJ_PATH:
                paths += 1
                if paths >= min_paths:
                    return True
        return False

    def image(self, dpi: float, max_side_px: int | None = None) -> Image.Image:
        """The page rendered on white at ``dpi`` (scaled down so its longer side is at most ``max_side_px``), RGB."""
        width, height = self._page.get_size()  # points
        scale = dpi / 72
        longest = max(width, height) * scale
        if max_side_px is not None and longest > max_side_px:
            scale *= max_side_px / longest
        bitmap = self._page.render(scale=scale, fill_color=(255, 255, 255, 255), rev_byteorder=True)
        try:
            image: Image.Image = bitmap.to_pil().convert("RGB")
            return image
        finally:
            bitmap.close()


def page_count(data: bytes) -> int:
    """How many pages the PDF has (``DocumentParseError`` if PDFium cannot open it)."""
    with _open(data) as document:
        return len(document)


@contextmanager
def pages(data: bytes, numbers: list[int] | None = None) -> Iterator[Iterator[Page]]:
    """The given 1-based pages (all when None), opened one at a time: each is closed before the next opens.

    Use as ``with pages(data) as each: for page in each: ...``; opening the document (and so a
    PDF PDFium refuses) raises ``DocumentParseError`` on entering.
    """
    with _open(data) as document:

        def each() -> Generator[Page, None, None]:
            for number in numbers if numbers is not None else range(1, len(document) + 1):
                page = document[number - 1]
                try:
                    yield Page(page, number)
                finally:
                    page.close()

        opened = each()
        try:
            yield opened
        finally:
            opened.close()  # the page a loop left open is closed before its document


def page_texts(data: bytes) -> list[str]:
    """The text layer of every page, as PDFium extracts it (empty for a scanned page)."""
    with pages(data) as each:
        return [page.text() for page in each]


def metadata_title(data: bytes) -> str | None:
    """The Title of the PDF's document information (None when empty or missing)."""
    with _open(data) as document:
        return str(document.get_metadata_dict().get("Title") or "") or None
