"""Optical character recognition: images and rendered PDF pages -> text with a confidence.

The only module that imports ``rapidocr``. It runs PP-OCR's detection, direction and
recognition ONNX models that ship inside the ``rapidocr`` wheel, on ONNX Runtime; the model
paths are passed explicitly, so rapidocr never looks for (or downloads) another model. The
bundled recognition model (PP-OCRv6 small, 18,708 symbols) reads Chinese (about 15,500
simplified and traditional ideographs), Japanese (those kanji plus hiragana and katakana),
English and accented Latin (French, German, Spanish, ...) and Greek. It has no Hangul and no
Cyrillic: Korean and Russian text is not read (their models are downloads only).

Images are decoded with Pillow (HEIC/HEIF through ``pi-heif``), PDF pages rendered with
PDFium (``ingest.pdfium``). Everything works one page at a time, so a 300-page scan holds one
page's pixels at once and reports progress per page.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DocumentParseError
from ingest import pdfium

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger(__name__)

# Image formats ragkeep accepts for OCR: FileKind.kind -> what a person calls it.
IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WebP", "heic": "HEIC"}
# Pages are rendered at OcrOptions.dpi (200 by default): 10-point text becomes about 28 px
# high, which the recogniser (48 px line input) reads well; more costs time without reading better.
# A page or image is scaled down so that its longer side is at most this (PP-OCR's own default
# limit); keeps a poster-sized page from needing gigabytes.
MAX_SIDE_PX = 4000
# Text is detected on the page scaled to at most this (rapidocr's default; lines are then
# recognised from the full-size page). Detecting at 4,000 px found the same text on two
# 200 dpi book pages and took about a quarter longer.
DETECT_MAX_SIDE_PX = 2000
# Smaller images are enlarged (at most MAX_UPSCALE times) so their longer side reaches this.
MIN_SIDE_PX = 1600
MAX_UPSCALE = 2.0
# Pillow refuses images with more pixels than this (decompression bombs) before decoding them.
MAX_IMAGE_PIXELS = 150_000_000


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its text, the recogniser's score (0-1) and box (x0, y0, x1, y1) in pixels."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class OcrResult:
    """The text read from one image or page.

    ``text`` has one line per visual line (boxes on the same row joined by a space), in
    reading order top to bottom; ``confidence`` is the recogniser's mean score over the
    characters read (None when nothing was read).
    """

    text: str
    confidence: float | None
    lines: tuple[OcrLine, ...] = ()
    width: int = 0
    height: int = 0

    def paragraphs(self) -> list[str]:
        """The text as paragraphs: rows one line-height or more apart start a new one; rows inside join with spaces.

        A word hyphenated at a line end is joined again; CJK rows join without a space.
        """
        return _paragraphs(self.lines)


@dataclass(frozen=True)
class OcrPage:
    """One page of a multi-page source (a PDF page, a TIFF frame); ``number`` counts from 1."""

    number: int
    result: OcrResult


PageProgress = Callable[[int, int], None]
"""Called after each page with (pages done, pages to do)."""


@dataclass(frozen=True)
class OcrOptions:
    """How a parse may OCR: ONNX Runtime threads (0: its default, the cores) and the PDF rendering resolution."""

    threads: int = 0
    dpi: int = 200


class OcrNeeded(DocumentParseError):
    """The document needs OCR and this parse may not run it: its parse moves to the ``ocr`` queue."""

    def __init__(self, pages: int, what: str) -> None:
        super().__init__(f"{what} needs OCR ({pages} page{'s' if pages != 1 else ''})")
        self.pages = pages


# ------------------------------------------------------------------ the engine

_MODELS = {
    "Det.model_path": "PP-OCRv6_det_small.onnx",
    "Rec.model_path": "PP-OCRv6_rec_small.onnx",
    "Cls.model_path": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
_engine_lock = threading.Lock()


def bundled_models() -> dict[str, Path]:
    """The ONNX models inside the installed rapidocr wheel (config key -> path); raises if one is missing."""
    import rapidocr

    root = Path(rapidocr.__file__).parent / "models"
    paths = {key: root / name for key, name in _MODELS.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise RuntimeError(
            f"rapidocr's bundled OCR models are missing ({', '.join(missing)}); ragkeep never downloads models"
        )
    return paths


@functools.cache
def _engine(threads: int) -> Any:
    from rapidocr import RapidOCR

    params: dict[str, Any] = {key: str(path) for key, path in bundled_models().items()}
    params.update(
        {
            "Global.log_level": "error",
            "Global.max_side_len": DETECT_MAX_SIDE_PX,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads if threads > 0 else -1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )
    return RapidOCR(params=params)


def warm_up(threads: int = 0) -> None:
    """Load the models now (a worker process does it at start, so the first page is not slower)."""
    with _engine_lock:
        _engine(threads)


# ----------------------------------------------------------------- recognising


def _same_row(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Boxes on one visual line: their vertical extents overlap by more than half the smaller height."""
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > 0.5 * min(a[3] - a[1], b[3] - b[1])


def _vertical(lines: list[OcrLine]) -> bool:
    """Mostly tall, narrow boxes: columns of vertical CJK text, read top to bottom, right to left."""
    tall = sum(1 for line in lines if (line.box[3] - line.box[1]) > 2 * (line.box[2] - line.box[0]))
    return len(lines) > 0 and tall * 2 > len(lines)


def _rows(lines: Iterable[OcrLine]) -> list[list[OcrLine]]:
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: (item.box[1], item.box[0])):
        if rows and _same_row(rows[-1][-1].box, line.box):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda item: item.box[0]) for row in rows]


def _join(lines: list[OcrLine]) -> str:
    if _vertical(lines):
        return "\n".join(line.text for line in sorted(lines, key=lambda item: -item.box[2]))
    return "\n".join(" ".join(item.text for item in row) for row in _rows(lines))


def _cjk(character: str) -> bool:
    return "\u2e80" <= character <= "\u9fff" or "\uac00" <= character <= "\ud7af" or "\uff00" <= character <= "\uffef"


def _paragraphs(lines: tuple[OcrLine, ...]) -> list[str]:
    if not lines:
        return []
    if _vertical(list(lines)):
        return ["".join(line.text for line in sorted(lines, key=lambda item: -item.box[2]))]
    rows = _rows(lines)
    heights = sorted(max(item.box[3] - item.box[1] for item in row) for row in rows)
    line_height = heights[len(heights) // 2]
    # Rows of one paragraph are evenly spaced: a gap clearly wider than the usual one starts the next.
    gaps = sorted(
        min(item.box[1] for item in below) - max(item.box[3] for item in above)
        for above, below in itertools.pairwise(rows)
    )
    usual_gap = gaps[len(gaps) // 2] if gaps else 0.0
    new_paragraph = max(usual_gap, 0.0) + 0.3 * line_height
    paragraphs: list[str] = []
    current = ""
    previous_bottom: float | None = None
    for row in rows:
        text = " ".join(item.text for item in row)
        top = min(item.box[1] for item in row)
        if previous_bottom is not None and top - previous_bottom > new_paragraph and current:
            paragraphs.append(current)
            current = ""
        if not current:
            current = text
        elif current.endswith("-") and text[:1].islower():
            current = current[:-1] + text
        elif _cjk(current[-1]) and _cjk(text[0]):
            current += text
        else:
            current += " " + text
        previous_bottom = max(item.box[3] for item in row)
    if current:
        paragraphs.append(current)
    return paragraphs


def recognise(pixels: np.ndarray, threads: int = 0) -> OcrResult:
    """OCR one RGB image given as an ``H x W x 3`` uint8 array."""
    with _engine_lock:  # one engine per process; ONNX Runtime parallelises inside a page
        output = _engine(threads)(pixels[:, :, ::-1])  # rapidocr expects OpenCV's BGR order
    lines: list[OcrLine] = []
    for box, text, score in zip(
        output.boxes if output.boxes is not None else (), output.txts or (), output.scores or (), strict=False
    ):
        if not str(text).strip():
            continue
        xs = [float(point[0]) for point in box]
        ys = [float(point[1]) for point in box]
        lines.append(OcrLine(str(text).strip(), float(score), (min(xs), min(ys), max(xs), max(ys))))
    characters = sum(len(line.text) for line in lines)
    confidence = sum(line.confidence * len(line.text) for line in lines) / characters if characters else None
    height, width = pixels.shape[:2]
    return OcrResult(_join(lines), confidence, tuple(lines), width, height)


# --------------------------------------------------------------------- images


@functools.cache
def _register_heif() -> None:
    import pi_heif

    pi_heif.register_heif_opener()


def _open_image(data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    _register_heif()
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        image = Image.open(io.BytesIO(data))
        image.size  # noqa: B018  (parsing the header raises for a truncated or unknown file)
    except Image.DecompressionBombError as exc:
        raise DocumentParseError(f"the image is too large to read ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DocumentParseError(f"the image is damaged or not a supported format ({type(exc).__name__})") from exc
    return image


def _pixels(frame: Image.Image) -> np.ndarray:
    import numpy as np
    from PIL import Image

    image = frame.convert("RGBA") if frame.mode in ("P", "LA", "PA") else frame
    if image.mode == "RGBA":  # transparent areas read as white paper, not black
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE_PX:
        image.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
    elif max(image.size) < MIN_SIDE_PX:
        # A page saved at screen resolution has 10-15 px letters, which the recogniser misreads
        # (whole lines at scores near 0.5); enlarged toward a 150-200 dpi page it reads them.
        factor = min(MAX_UPSCALE, MIN_SIDE_PX / max(image.size))
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
    return np.asarray(image)


def image_page_count(data: bytes) -> int:
    """Frames of an image (a multi-page TIFF has several; most images one)."""
    return int(getattr(_open_image(data), "n_frames", 1) or 1)


def ocr_image_pages(
    data: bytes, *, threads: int = 0, max_pages: int | None = None, on_page: PageProgress | None = None
) -> Iterator[OcrPage]:
    """OCR every frame of an image (PNG, JPEG, TIFF incl. multi-page, BMP, WebP, HEIC), one at a time.

    Raises ``DocumentParseError`` for a damaged image, or one with more than ``max_pages`` frames.
    """
    from PIL import ImageSequence

    image = _open_image(data)
    total = int(getattr(image, "n_frames", 1) or 1)
    if max_pages is not None and total > max_pages:
        raise DocumentParseError(
            f"the image has {total} pages; the limit is {max_pages} (RAGKEEP_LIMITS__MAX_PDF_PAGES)"
        )
    try:
        for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
            yield OcrPage(number, recognise(_pixels(frame), threads))
            if on_page is not None:
                on_page(number, total)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DocumentParseError(f"the image is damaged and cannot be read ({type(exc).__name__}: {exc})") from exc


def ocr_image(data: bytes, *, threads: int = 0) -> OcrResult:
    """OCR an image file's bytes (its first frame; see ``ocr_image_pages`` for multi-page TIFFs)."""
    for page in ocr_image_pages(data, threads=threads, max_pages=None):
        return page.result
    return OcrResult("", None)


# ------------------------------------------------------------------------ PDFs


# A page's text layer is usable when it has this many letters or digits (any script) and
# at most this share of characters that carry nothing: U+FFFD, private-use glyphs, controls.
MIN_USABLE_CHARS = 10
MAX_JUNK_SHARE = 0.3
# A page without a usable text layer is OCRed when it draws an image, or this many vector
# paths (text converted to outlines); a blank page or a ruled form without text is skipped.
MIN_OUTLINE_PATHS = 200
_CID = re.compile(r"\(cid:\d+\)")


def usable_text(text: str) -> bool:
    """Whether a text layer says something: enough letters or digits, little junk (pdfminer's ``(cid:N)``)."""
    text = _CID.sub("\ufffd", text)
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return False
    junk = sum(1 for c in visible if c == "\ufffd" or unicodedata.category(c) in ("Co", "Cc", "Cs"))
    words = sum(1 for c in visible if c.isalnum())
    return words >= MIN_USABLE_CHARS and junk <= MAX_JUNK_SHARE * len(visible)


def pages_needing_ocr(data: bytes, other_text: dict[int, str] | None = None) -> list[int]:
    """The 1-based pages of a PDF whose text layer is empty or unusable and that draw an image (or outlines).

    ``other_text`` is what another extractor (pdfminer) read per page: a page is left alone
    when either PDFium's text layer or that text is usable.
    """
    other_text = other_text or {}
    wanted: list[int] = []
    with pdfium.pages(data) as each:
        for page in each:
            if usable_text(other_text.get(page.number, "")):
                continue
            if not usable_text(page.text()) and page.draws_something(MIN_OUTLINE_PATHS):
                wanted.append(page.number)
    return wanted


def ocr_pdf_pages(
    data: bytes,
    pages: Iterable[int] | None = None,
    *,
    threads: int = 0,
    dpi: int = 200,
    on_page: PageProgress | None = None,
) -> Iterator[OcrPage]:
    """Render and OCR the given 1-based ``pages`` of a PDF (all when None), one page at a time."""
    import numpy as np

    wanted = list(pages) if pages is not None else list(range(1, pdfium.page_count(data) + 1))
    with pdfium.pages(data, wanted) as each:
        for done, page in enumerate(each, start=1):
            pixels = np.asarray(page.image(dpi, MAX_SIDE_PX))
            yield OcrPage(page.number, recognise(pixels, threads))
            del pixels
            if on_page is not None:
                on_page(done, len(wanted))


# ------------------------------------------------------------ office pictures

_OFFICE_MEDIA = ("word/media/", "ppt/media/")
_OFFICE_PICTURES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def office_pictures(data: bytes, max_pictures: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """The raster pictures inside a DOCX or PPTX (name, bytes), in archive order; vector ones (EMF, SVG) are skipped.

    Raises ``DocumentParseError`` when there are more than ``max_pictures`` or they unpack to more than ``max_bytes``.
    """
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return []
    with archive:
        members = [
            info
            for info in archive.infolist()
            if info.filename.startswith(_OFFICE_MEDIA) and info.filename.lower().endswith(_OFFICE_PICTURES)
        ]
        if len(members) > max_pictures:
            raise DocumentParseError(f"the file has {len(members)} pictures to OCR; the limit is {max_pictures}")
        if sum(info.file_size for info in members) > max_bytes:
            raise DocumentParseError("the file's pictures unpack to more than the parse memory limit")
        return [(info.filename.rsplit("/", 1)[-1], archive.read(info)) for info in members]
