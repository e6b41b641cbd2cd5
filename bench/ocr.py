"""OCR pages per second (issue 19): the bare recogniser, and a scanned PDF through ragkeep, side by side.

The scan is made from real pages: the first ``PAGES`` pages of ``DA-619p.pdf`` (a typeset book
in ``unstructured-example-docs``) rendered at 150 dpi and saved as an image-only PDF, as a
scanner would. The floor OCRs it in this process with ``ingest.ocr`` (ONNX Runtime on every
core, one page at a time, 200 dpi); ragkeep gets it over HTTP and reads it on its ``ocr``
queue — the pages/s there include the upload, the text-layer parse that hands it over, the
embedding and the build.

    .venv/bin/python -m bench.run --only ocr     # about 5 minutes on 2 busy cores
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

from bench.datasets import DATASETS
from ingest import ocr, pdfium

PAGES = 20
SCAN_DPI = 150
SOURCE = DATASETS / "unstructured-example-docs" / "files" / "pdf" / "DA-619p.pdf"


def scanned_pdf(pages: int = PAGES) -> bytes:
    """An image-only PDF of the source's first ``pages`` pages (JPEG, as scanners write them)."""
    with pdfium.pages(SOURCE.read_bytes(), list(range(1, pages + 1))) as each:
        images = [page.image(SCAN_DPI).convert("L") for page in each]
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=SCAN_DPI, quality=85)
    return out.getvalue()


def floor(data: bytes) -> dict[str, Any]:
    """The recogniser alone on the scan, in this process: pages/s and what it read."""
    ocr.warm_up()
    started = time.monotonic()
    pages = list(ocr.ocr_pdf_pages(data))
    seconds = time.monotonic() - started
    confidences = [p.result.confidence for p in pages if p.result.confidence is not None]
    return {
        "pages": len(pages),
        "seconds": round(seconds, 2),
        "pages_per_s": round(len(pages) / seconds, 3),
        "characters": sum(len(p.result.text) for p in pages),
        "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
        "threads": os.cpu_count(),
    }


def section(stack: Any, results: dict[str, Any], pages: int = PAGES) -> None:
    from bench import ingestion  # the stack's tools: not needed to render a report

    data = scanned_pdf(pages)
    bare = floor(data)
    through = ingestion.ingest_ragkeep(stack, "ocr-scan", [(f"scan-{pages}p.pdf", data)])
    results["ocr"] = {
        "source": f"{SOURCE.name}, first {pages} pages rendered at {SCAN_DPI} dpi into an image-only PDF",
        "floor": bare,
        "ragkeep": {
            **through.as_dict(),
            "pages": pages,
            "pages_per_s": round(pages / through.seconds, 3),
        },
    }


def markdown(results: dict[str, Any]) -> list[str]:
    report = results["ocr"]
    bare, through = report["floor"], report["ragkeep"]
    return [
        "",
        "### OCR",
        "",
        f"{report['source']}. Floor: `ingest.ocr` in one process (ONNX Runtime, {bare['threads']} threads, "
        "200 dpi, one page at a time); ragkeep: uploaded over HTTP, parsed on the `ingest` queue, handed to the "
        "`ocr` worker, OCRed, embedded and built into a live version.",
        "",
        "| path | pages | seconds | pages/s | mean confidence | chunks |",
        "|---|---|---|---|---|---|",
        f"| floor (recogniser alone) | {bare['pages']} | {bare['seconds']} | {bare['pages_per_s']} | "
        f"{bare['mean_confidence']} | |",
        f"| ragkeep (upload to live version) | {through['pages']} | {through['seconds']:.1f} | "
        f"{through['pages_per_s']} | | {through['chunks']} |",
    ]
