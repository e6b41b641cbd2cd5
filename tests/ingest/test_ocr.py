"""OCR (issue 19): the words a person reads on the example images and scanned pages.

Each expected word below was read off the image by eye (the files are in
``unstructured-example-docs``), not copied from the recogniser's output. Everything runs
behind the test network guard, with rapidocr's downloader made to fail: only the models
inside the wheel are used.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.config import IngestionConfig
from core.errors import DocumentParseError
from core.filetypes import detect_file_kind
from ingest import ocr
from ingest.ocr import OcrNeeded, OcrOptions
from ingest.partition import partition_document
from tests.conftest import DATASETS, EXAMPLE_DOCS

IMG = EXAMPLE_DOCS / "img"
PDF = EXAMPLE_DOCS / "pdf"


@pytest.fixture(scope="module", autouse=True)
def _no_downloads() -> Iterator[None]:
    """rapidocr's downloader fails the test if it is ever called (the guard would refuse its connection too)."""
    from rapidocr.utils.download_file import DownloadFile

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("rapidocr tried to download a model")

    original = DownloadFile.run
    DownloadFile.run = refuse  # type: ignore[method-assign,assignment]
    ocr._engine.cache_clear()
    yield
    DownloadFile.run = original  # type: ignore[method-assign]


def _text(path: Path) -> str:
    return "\n".join(page.result.text for page in ocr.ocr_image_pages(path.read_bytes()))


def test_the_models_come_from_the_wheel() -> None:
    import rapidocr

    models = ocr.bundled_models()
    assert {p.name for p in models.values()} == {
        "PP-OCRv6_det_small.onnx",
        "PP-OCRv6_rec_small.onnx",
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }
    assert all(p.is_file() and p.parent.parent == Path(rapidocr.__file__).parent for p in models.values())


@pytest.mark.slow
def test_an_english_page_photographed_as_heic_reads_as_a_person_reads_it() -> None:
    result = ocr.ocr_image((IMG / "DA-1p.heic").read_bytes())
    for words in ("MAIN GAME", "CREATURES", "Abomination", "maleficar", "Arcane Horror", "Circle of Magi"):
        assert words in result.text
    assert result.confidence is not None and result.confidence > 0.9
    paragraphs = result.paragraphs()
    assert paragraphs[:3] == ["MAIN GAME", "CREATURES", "Abomination"]
    assert any(p.startswith('"We arrived in the dead of night.') for p in paragraphs)


def test_chinese_and_vertical_japanese() -> None:
    chinese = _text(IMG / "chi_sim_image.jpeg")
    for words in ("甘草", "清道夫", "适用人群", "美白"):
        assert words in chinese
    japanese = ocr.ocr_image((IMG / "jpn-vert.jpeg").read_bytes())
    # Vertical columns read top to bottom, right to left: the first column starts the text.
    assert japanese.paragraphs()[0].startswith("元来日本語は漢文に倣い")
    assert "縦書き" in japanese.text and "仮名" in japanese.text


def test_a_tiff_page_of_a_paper() -> None:
    text = _text(IMG / "layout-parser-paper-fast.tiff")
    for words in ("LayoutParser", "Unified Toolkit", "Document Image Analysis", "Allen Institute for AI"):
        assert words in text


def test_multi_page_tiff_and_webp_are_read_frame_by_frame_with_progress() -> None:
    frames = [Image.open(IMG / "chi_sim_image.jpeg").convert("RGB"), Image.open(IMG / "jpn-vert.jpeg").convert("RGB")]
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    progress: list[tuple[int, int]] = []
    pages = list(ocr.ocr_image_pages(tiff.getvalue(), on_page=lambda done, total: progress.append((done, total))))
    assert [p.number for p in pages] == [1, 2] and progress == [(1, 2), (2, 2)]
    assert "清道夫" in pages[0].result.text and "縦書き" in pages[1].result.text
    with pytest.raises(DocumentParseError, match="2 pages; the limit is 1"):
        list(ocr.ocr_image_pages(tiff.getvalue(), max_pages=1))
    webp = io.BytesIO()
    frames[0].save(webp, format="WEBP", quality=95)
    assert detect_file_kind(webp.getvalue(), "photo.webp").kind == "webp"
    assert "清道夫" in ocr.ocr_image(webp.getvalue()).text


def test_a_picture_without_text_reads_nothing_and_fails_as_a_document() -> None:
    assert ocr.ocr_image((IMG / "bmp_24.bmp").read_bytes()).confidence is None
    data = (IMG / "bmp_24.bmp").read_bytes()
    with pytest.raises(DocumentParseError, match="OCR found no text"):
        partition_document(
            data, "bmp_24.bmp", detect_file_kind(data, "bmp_24.bmp"), IngestionConfig(), ocr=OcrOptions()
        )


def test_a_damaged_image_fails_with_a_reason() -> None:
    data = (IMG / "DA-1p.png").read_bytes()[:3000]
    with pytest.raises(DocumentParseError, match="damaged"):
        ocr.ocr_image(data)


def test_which_pdf_pages_need_ocr() -> None:
    assert ocr.pages_needing_ocr((PDF / "DA-1p.pdf").read_bytes()) == []  # its text layer is good
    assert ocr.pages_needing_ocr((PDF / "loremipsum-flat.pdf").read_bytes()) == [1]  # a scan
    assert ocr.pages_needing_ocr((PDF / "layout-parser-paper-with-empty-pages.pdf").read_bytes()) == []  # blank
    # 31 slides with text; the 29th shows only a logo and its number.
    assert ocr.pages_needing_ocr(
        (DATASETS / "pdfminer-samples-subset" / "nonfree" / "nlp2004slides.pdf").read_bytes()
    ) == [29]
    assert not ocr.usable_text("(cid:12)(cid:7)(cid:33)(cid:4)(cid:18)(cid:5)(cid:9)(cid:40)(cid:2)(cid:41)(cid:3)")
    assert not ocr.usable_text("  \n 12 ")
    assert ocr.usable_text("Quarterly revenue rose by 4%.")


@pytest.mark.slow
def test_a_scanned_pdf_is_read_by_ocr_with_confidence_on_every_chunk() -> None:
    data = (PDF / "single_table.pdf").read_bytes()
    kind = detect_file_kind(data, "single_table.pdf")
    with pytest.raises(OcrNeeded) as needed:
        partition_document(data, "single_table.pdf", kind, IngestionConfig())
    assert needed.value.pages == 1
    pages: list[tuple[int, int]] = []
    chunks = partition_document(
        data, "single_table.pdf", kind, IngestionConfig(), ocr=OcrOptions(), on_page=lambda *p: pages.append(p)
    )
    text = " ".join(c.text for c in chunks)
    for words in ("Processing", "total chunks", "Base 128", "64,058", "Chipper", "20,843", "N/A"):
        assert words in text
    assert pages == [(1, 1)]
    assert all(c.metadata["ocr"] is True and 0.5 < float(c.metadata["ocr_confidence"] or 0) <= 1 for c in chunks)
    assert all(c.metadata["page"] == 1 and c.metadata["parser"] == "ocr" for c in chunks)


@pytest.mark.parametrize(("name", "words"), [("picture.pptx", "python powered")])
def test_a_presentation_that_is_only_a_picture_is_read_by_ocr(name: str, words: str) -> None:
    data = (EXAMPLE_DOCS / name).read_bytes()
    kind = detect_file_kind(data, name)
    with pytest.raises(OcrNeeded):
        partition_document(data, name, kind, IngestionConfig())
    chunks = partition_document(data, name, kind, IngestionConfig(), ocr=OcrOptions())
    assert words in " ".join(c.text for c in chunks) and all(c.metadata["ocr"] for c in chunks)


def test_documents_with_text_never_ask_for_ocr() -> None:
    for name in ("fake.docx", "pdf/DA-1p.pdf", "contains-pictures.docx"):
        data = (EXAMPLE_DOCS / name).read_bytes()
        chunks = partition_document(data, name, detect_file_kind(data, name), IngestionConfig())
        assert chunks and not any(c.metadata.get("ocr") for c in chunks)
