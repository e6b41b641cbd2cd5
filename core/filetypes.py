"""Decide what an uploaded file is from its bytes, using the name only to tell text formats apart.

The API calls this before anything is stored, so an unsupported file is refused with
415 and an empty one with 422. It reads only the first bytes and, for ZIP containers,
the central directory and the (at most 100-byte, stored) ``mimetype`` member of an
OpenDocument or EPUB file — never decompresses a document.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import olefile

from core.errors import InvalidInput, UnsupportedFileType

_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class FileKind:
    kind: str
    content_type: str


PDF = FileKind("pdf", "application/pdf")
DOCX = FileKind("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
PPTX = FileKind("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation")
XLSX = FileKind("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
MSG = FileKind("msg", "application/vnd.ms-outlook")
EML = FileKind("eml", "message/rfc822")
HTML = FileKind("html", "text/html")
MARKDOWN = FileKind("md", "text/markdown")
CSV = FileKind("csv", "text/csv")
TSV = FileKind("tsv", "text/tsv")
JSON = FileKind("json", "application/json")
XML = FileKind("xml", "application/xml")
TEXT = FileKind("txt", "text/plain")
# Converted before parsing (ingest/convert.py): LibreOffice to their OOXML twin, pandoc to HTML.
DOC = FileKind("doc", "application/msword")
XLS = FileKind("xls", "application/vnd.ms-excel")
PPT = FileKind("ppt", "application/vnd.ms-powerpoint")
ODT = FileKind("odt", "application/vnd.oasis.opendocument.text")
ODS = FileKind("ods", "application/vnd.oasis.opendocument.spreadsheet")
ODP = FileKind("odp", "application/vnd.oasis.opendocument.presentation")
RTF = FileKind("rtf", "application/rtf")
EPUB = FileKind("epub", "application/epub+zip")
# Unpacked at upload into one document per member (ingest/unpack.py); never a document itself.
ZIP = FileKind("zip", "application/zip")
# Read with OCR (ingest/ocr.py), on the ``ocr`` queue.
PNG = FileKind("png", "image/png")
JPEG = FileKind("jpeg", "image/jpeg")
TIFF = FileKind("tiff", "image/tiff")
BMP = FileKind("bmp", "image/bmp")
WEBP = FileKind("webp", "image/webp")
HEIC = FileKind("heic", "image/heic")
IMAGE_KINDS = frozenset(k.kind for k in (PNG, JPEG, TIFF, BMP, WEBP, HEIC))

SUPPORTED_KINDS = tuple(
    k.kind
    for k in (
        *(PDF, DOCX, PPTX, XLSX, MSG, EML, HTML, MARKDOWN, CSV, TSV, JSON, XML, TEXT),
        *(DOC, XLS, PPT, ODT, ODS, ODP, RTF, EPUB, ZIP),
        *(PNG, JPEG, TIFF, BMP, WEBP, HEIC),
    )
)

# Extensions of text formats; any other text file is ingested as plain text.
_TEXT_EXTENSIONS = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".csv": CSV,
    ".tsv": TSV,
    ".json": JSON,
    ".ndjson": JSON,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".xml": XML,
    ".eml": EML,
}
_OOXML_PARTS = {"word/document.xml": DOCX, "ppt/presentation.xml": PPTX, "xl/workbook.xml": XLSX}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OOXML_EXTENSIONS = {".docx": DOCX, ".pptx": PPTX, ".xlsx": XLSX}
_ZIP_MIMETYPES = {kind.content_type: kind for kind in (ODT, ODS, ODP, EPUB)}
_OLE_STREAMS = {"WordDocument": DOC, "Workbook": XLS, "Book": XLS, "PowerPoint Document": PPT}
_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_EMAIL_HEADER = re.compile(rb"^(Received|Return-Path|From|MIME-Version|Message-ID|Delivered-To|Date|Subject|To):", re.I)
_UNKNOWN_OLE = "an OLE container that is not a Word, Excel, PowerPoint or Outlook file"


def _extension(filename: str) -> str:
    return PurePosixPath(filename).suffix.lower()


def _looks_like_utf16(head: bytes) -> bool:
    """UTF-16 without a byte-order mark: NULs on one byte parity only (ASCII-range text)."""
    even, odd = head[0::2], head[1::2]
    if not odd:
        return False
    even_zero, odd_zero = even.count(0) / len(even), odd.count(0) / len(odd)
    return max(even_zero, odd_zero) > 0.4 and min(even_zero, odd_zero) < 0.02


def _looks_like_text(head: bytes) -> bool:
    if head.startswith(_BOMS):
        return True
    if b"\x00" in head:
        return _looks_like_utf16(head)
    # Cut at a character boundary: a multi-byte sequence may straddle the sniff window.
    sample = head[: len(head) - 4] if len(head) == _SNIFF_BYTES else head
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError:
        pass
    # Legacy single- and double-byte encodings (cp1252, Shift_JIS, ...): mostly printable bytes.
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return controls <= len(sample) // 100


def _sniff_text(head: bytes, filename: str) -> FileKind:
    by_extension = _TEXT_EXTENSIONS.get(_extension(filename))
    if by_extension is not None:
        return by_extension
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return HTML
    if stripped.startswith(b"<?xml"):
        return XML
    if _EMAIL_HEADER.match(stripped):
        return EML
    return TEXT


def _check_unpacked_size(archive: zipfile.ZipFile, packed: int, filename: str, max_unpacked: int) -> None:
    """Refuse ZIP bombs from the central directory alone (nothing is decompressed)."""
    unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > max_unpacked or (unpacked > 50 * 1024 * 1024 and unpacked > packed * 200):
        raise InvalidInput(
            f"{filename!r} would unpack to {unpacked // (1024 * 1024)} MiB from {max(1, packed // 1024)} KiB; "
            "refusing a possible ZIP bomb"
        )


def _sniff_zip(data: bytes, filename: str, max_unpacked: int) -> FileKind:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
    except zipfile.BadZipFile:
        # A truncated OOXML file still starts with PK; let the parser report what is wrong.
        by_extension = _OOXML_EXTENSIONS.get(_extension(filename))
        if by_extension is not None:
            return by_extension
        raise UnsupportedFileType(f"{filename!r} is a damaged ZIP archive, not a supported document") from None
    _check_unpacked_size(archive, len(data), filename, max_unpacked)
    for part, kind in _OOXML_PARTS.items():
        if part in names:
            return kind
    if "mimetype" in names and archive.getinfo("mimetype").file_size <= 100:
        try:
            with archive.open("mimetype") as member:
                mimetype = member.read(100).decode("ascii", "replace").strip()
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError):
            mimetype = ""
        if mimetype in _ZIP_MIMETYPES:
            return _ZIP_MIMETYPES[mimetype]
    return ZIP


# HEIF brands of still images from cameras and phones (AVIF, also HEIF-boxed, is not read).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}


def _sniff_image(head: bytes) -> FileKind | None:
    """The image kinds OCR reads, by their signatures; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return TIFF
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS and b"avif" not in head[8:32]:
        return HEIC
    # "BM" also starts text ("BMW ..."): require a plausible bitmap header after it.
    if head.startswith(b"BM") and len(head) > 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return BMP
    return None


def _sniff_ole(data: bytes, filename: str) -> FileKind:
    # Outlook messages and encrypted OOXML files share the OLE container with legacy Office.
    try:
        # Read as a file, so that the stubs see names as str (olefile decodes them; its stubs tie them to bytes data).
        ole: olefile.OleFileIO[str] = olefile.OleFileIO(io.BytesIO(data))
        streams = {"/".join(entry) for entry in ole.listdir(streams=True, storages=True)}
    except OSError:
        streams = set()
    if _extension(filename) == ".msg" or any(name.startswith("__substg1.0_") for name in streams):
        return MSG
    if "EncryptedPackage" in streams:
        # The parser turns this into a readable "password-protected" failure for the document.
        return _OOXML_EXTENSIONS.get(_extension(filename), DOCX)
    for stream, kind in _OLE_STREAMS.items():
        if stream in streams:
            return kind
    raise UnsupportedFileType(f"{filename!r} is {_UNKNOWN_OLE}")


def detect_file_kind(data: bytes, filename: str, max_unpacked: int = 512 * 1024 * 1024) -> FileKind:
    """Return the kind of ``data``; content decides, the extension only separates text formats.

    Raises ``InvalidInput`` for an empty file or a ZIP container that would unpack to
    more than ``max_unpacked`` bytes, and ``UnsupportedFileType`` for anything
    ragkeep cannot ingest (audio, video, executables, unknown binaries). A ``ZIP`` is an archive
    the caller unpacks; converted kinds (``DOC`` … ``EPUB``) need their converter (``ingest/convert.py``).
    """
    if not data.strip():
        raise InvalidInput(f"{filename!r} is empty (or only whitespace); nothing to ingest")
    head = data[:_SNIFF_BYTES]
    # A ZIP's signature is at offset 0; a PDF's may follow junk, so "%PDF-" is looked for in the first
    # KiB. The ZIP test comes first: an uncompressed ZIP whose first member is a PDF holds both.
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(data, filename, max_unpacked)
    if b"%PDF-" in head[:1024]:
        return PDF
    if head.startswith(_OLE_MAGIC):
        return _sniff_ole(data, filename)
    if head.startswith(b"{\\rtf"):
        return RTF
    if (image := _sniff_image(head)) is not None:
        return image
    if _looks_like_text(head):
        return _sniff_text(head, filename)
    raise UnsupportedFileType(
        f"{filename!r} is not a supported document type (supported: {', '.join(SUPPORTED_KINDS)})"
    )


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_FILENAME_LENGTH = 255


def clean_filename(raw: str | None) -> str:
    """The name a document is stored under: the last path component, without control characters.

    Path components (``../``, ``C:\\dir\\``) are dropped, so a name can never address
    anything outside its collection. Raises ``InvalidInput`` if nothing usable remains.
    """
    if not raw:
        raise InvalidInput("every uploaded file needs a filename")
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME_CHARS.sub("", name).strip().strip(".")
    if not name:
        raise InvalidInput(f"filename {raw!r} has no usable name once path parts are removed")
    if len(name.encode("utf-8")) > MAX_FILENAME_LENGTH:
        raise InvalidInput(f"filename is longer than {MAX_FILENAME_LENGTH} bytes")
    return name
