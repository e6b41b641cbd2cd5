"""Optical character recognition: images and rendered PDF pages -> text with a confidence.

The only module that imports ``rapidocr``. It runs PP-OCR's detection, direction and
recognition ONNX models that ship inside the ``rapidocr`` wheel, on ONNX Runtime; the model
paths are passed explicitly, so rapidocr never looks for (or downloads) another model. The
bundled recognition model reads Chinese (simplified and traditional), English and Japanese
(kana and kanji); other scripts (Korean, Cyrillic, Arabic, ...) would need models that are
only downloadable, and are not read.

Images are decoded with Pillow (HEIC/HEIF through ``pi-heif``), PDF pages rendered with
PDFium (``pypdfium2``). Everything works one page at a time, so a 300-page scan holds one
page's pixels at once and reports progress per page.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DocumentParseError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger(__name__)

# Image formats ragkeep accepts for OCR: FileKind.kind -> what a person calls it.
IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WebP", "heic": "HEIC"}
# Pages rendered at this resolution: 200 dpi makes 10-point text about 28 px high, where the
# recogniser (48 px line height) reads it well; more costs time without reading better.
RENDER_DPI = 200
# A page or image is scaled down so that its longer side is at most this (PP-OCR's own default
# limit); keeps a poster-sized page from needing gigabytes.
MAX_SIDE_PX = 4000
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


@dataclass(frozen=True)
class OcrPage:
    """One page of a multi-page source (a PDF page, a TIFF frame); ``number`` counts from 1."""

    number: int
    result: OcrResult


PageProgress = Callable[[int, int], None]
"""Called after each page with (pages done, pages to do)."""


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
            "Global.max_side_len": MAX_SIDE_PX,
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


def _join(lines: list[OcrLine]) -> str:
    if _vertical(lines):
        return "\n".join(line.text for line in sorted(lines, key=lambda item: -item.box[2]))
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: (item.box[1], item.box[0])):
        if rows and _same_row(rows[-1][-1].box, line.box):
            rows[-1].append(line)
        else:
            rows.append([line])
    return "\n".join(" ".join(item.text for item in sorted(row, key=lambda item: item.box[0])) for row in rows)


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


def pdf_page_texts(data: bytes) -> list[str]:
    """The text layer of every page, as PDFium extracts it (empty for a scanned page)."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise DocumentParseError(f"the PDF cannot be opened ({exc})") from exc
    texts: list[str] = []
    try:
        for number in range(len(document)):
            page = document[number]
            textpage = page.get_textpage()
            try:
                texts.append(textpage.get_text_range())
            finally:
                textpage.close()
                page.close()
    finally:
        document.close()
    return texts


def _render(page: Any, dpi: int) -> np.ndarray:
    width, height = page.get_size()  # points
    scale = dpi / 72
    longest = max(width, height) * scale
    if longest > MAX_SIDE_PX:
        scale *= MAX_SIDE_PX / longest
    bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255), rev_byteorder=True)
    try:
        image = bitmap.to_pil().convert("RGB")
    finally:
        bitmap.close()
    import numpy as np

    return np.asarray(image)


def ocr_pdf_pages(
    data: bytes,
    pages: Iterable[int] | None = None,
    *,
    threads: int = 0,
    dpi: int = RENDER_DPI,
    on_page: PageProgress | None = None,
) -> Iterator[OcrPage]:
    """Render and OCR the given 1-based ``pages`` of a PDF (all when None), one page at a time."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise DocumentParseError(f"the PDF cannot be opened ({exc})") from exc
    try:
        wanted = list(pages) if pages is not None else list(range(1, len(document) + 1))
        for done, number in enumerate(wanted, start=1):
            page = document[number - 1]
            try:
                pixels = _render(page, dpi)
            finally:
                page.close()
            yield OcrPage(number, recognise(pixels, threads))
            del pixels
            if on_page is not None:
                on_page(done, len(wanted))
    finally:
        document.close()
