from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from core.errors import InvalidInput, UnsupportedFileType
from core.filetypes import clean_filename, detect_file_kind
from tests.conftest import EXAMPLE_DOCS

EXPECTED = {
    "fake-text.txt": "txt",
    "fake-text-utf-16-be.txt": "txt",
    "fake-text-utf-32.txt": "txt",
    "simple.docx": "docx",
    "fake-power-point.pptx": "pptx",
    "science-exploration-1p.pptx": "pptx",  # libmagic calls it octet-stream; the ZIP parts say pptx
    "stanley-cups.xlsx": "xlsx",
    "password_protected.xlsx": "xlsx",  # encrypted: accepted, then fails as a document with a reason
    "fake-email.msg": "msg",
    "fake-email.eml": "eml",
    "fake-html.html": "html",
    "fake-html-cp1252.html": "html",
    "README.md": "md",
    "umlauts-non-utf8.md": "md",
    "stanley-cups.csv": "csv",
    "stanley-cups.tsv": "tsv",
    "simple.json": "json",
    "factbook.xml": "xml",
    "rotated-page-90.pdf": "pdf",
    # converted before parsing (issue 19 item 2)
    "fake.doc": "doc",
    "tests-example.xls": "xls",
    "fake-power-point.ppt": "ppt",
    "fake.odt": "odt",
    "fake-doc.rtf": "rtf",
    "winter-sports.epub": "epub",
    "simple.zip": "zip",  # unpacked at upload (issue 19 item 3)
    # read with OCR (issue 19 item 1)
    "img/DA-1p.png": "png",
    "img/example.jpg": "jpeg",
    "img/chi_sim_image.jpeg": "jpeg",
    "img/layout-parser-paper-fast.tiff": "tiff",
    "img/bmp_24.bmp": "bmp",
    "img/DA-1p.heic": "heic",
}


@pytest.mark.parametrize(("name", "kind"), sorted(EXPECTED.items()))
def test_detects_kind_from_content(name: str, kind: str) -> None:
    assert detect_file_kind((EXAMPLE_DOCS / name).read_bytes(), name).kind == kind


@pytest.mark.parametrize("name", ["CantinaBand3.wav"])
def test_rejects_unsupported_types(name: str) -> None:
    with pytest.raises(UnsupportedFileType):
        detect_file_kind((EXAMPLE_DOCS / name).read_bytes(), Path(name).name)


def test_content_wins_over_a_lying_extension() -> None:
    pdf = (EXAMPLE_DOCS / "rotated-page-90.pdf").read_bytes()
    assert detect_file_kind(pdf, "report.docx").kind == "pdf"
    assert detect_file_kind(b"just some words\n", "notes.pdf").kind == "txt"
    assert detect_file_kind(pdf, "no-extension").kind == "pdf"


def test_an_uncompressed_zip_whose_first_member_is_a_pdf_is_a_zip() -> None:
    pdf = (EXAMPLE_DOCS / "rotated-page-90.pdf").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("report.pdf", pdf)
    data = buffer.getvalue()
    assert b"%PDF-" in data[:1024]  # what the PDF test looks for is there
    assert detect_file_kind(data, "reports.zip").kind == "zip"
    assert detect_file_kind(b"junk before the header\n" + pdf, "report.pdf").kind == "pdf"


@pytest.mark.parametrize("data", [b"", b"   \n\t  "])
def test_empty_file_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        detect_file_kind(data, "empty.txt")


def test_shift_jis_text_is_text() -> None:
    assert detect_file_kind("日本語の文書です。".encode("shift_jis") * 20, "jp.txt").kind == "txt"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b.txt", "ab.txt"),
        ("  spaced name.md ", "spaced name.md"),
        ("日本語.txt", "日本語.txt"),
    ],
)
def test_clean_filename_keeps_only_the_last_component(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


@pytest.mark.parametrize("raw", ["", "..", "../", "x" * 300 + ".txt", None])
def test_clean_filename_rejects_unusable_names(raw: str | None) -> None:
    with pytest.raises(InvalidInput):
        clean_filename(raw)


def test_webp_is_an_image_and_bm_text_is_text() -> None:
    """A WebP (no sample in the datasets) is read by its RIFF signature; text starting "BM" stays text."""
    import io

    from PIL import Image

    webp = io.BytesIO()
    Image.new("RGB", (32, 16), "white").save(webp, format="WEBP")
    assert detect_file_kind(webp.getvalue(), "photo.webp").kind == "webp"
    assert detect_file_kind(b"BMW and Mercedes sold more cars this year.\n" * 3, "cars.txt").kind == "txt"


def test_gif_and_avif_are_refused_with_the_supported_list() -> None:
    with pytest.raises(UnsupportedFileType, match="png"):
        detect_file_kind(b"GIF89a" + bytes(range(256)) * 4, "anim.gif")
    with pytest.raises(UnsupportedFileType):
        detect_file_kind(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + bytes(range(256)) * 4, "x.avif")
