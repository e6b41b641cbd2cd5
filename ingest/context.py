"""Contextual chunk headers: the document context embedded and BM25-indexed with a chunk.

A chunk of a quarterly filing that reads "Total revenue 13,507" says nothing about which
company or quarter it belongs to, and neither its vector nor its terms can tell it from the
same line in the next quarter's filing. The question names exactly that ("…revenue of
Acme in Q2 2023"), so the text that is indexed carries the document's title, its file
name and the headings above the chunk. Citations keep showing the chunk's own text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ingest.partition import filename_words

ContextMode = Literal["off", "title", "title_section"]


def header(metadata: Mapping[str, Any], filename: str, mode: ContextMode, upload_keys: Sequence[str] = ()) -> str:
    """The context lines for a chunk with ``metadata`` (the parser's and the upload's) of ``filename``.

    ``upload_keys`` are the upload metadata keys the collection marks as context
    (``ingestion.context_metadata``), e.g. company and quarter. Chunks parsed before titles
    were recorded have none: their file name stands in.
    """
    if mode == "off":
        return ""
    name = filename_words(filename)
    title = str(metadata.get("document_title") or "").strip() or name
    lines = [f"Document: {title}" if name.lower() in title.lower() else f"Document: {title} ({name})"]
    if mode == "title_section":
        path = str(metadata.get("section_path") or metadata.get("section") or "").strip()
        if path and path.lower() != title.lower():
            lines.append(f"Section: {path}")
    lines.extend(f"{key}: {metadata[key]}" for key in upload_keys if metadata.get(key) not in (None, ""))
    return "\n".join(lines)


def indexed_text(
    text: str, metadata: Mapping[str, Any], filename: str, mode: ContextMode, upload_keys: Sequence[str] = ()
) -> str:
    """What is embedded and BM25-indexed for a chunk: its context header, then its text."""
    context = header(metadata, filename, mode, upload_keys)
    return f"{context}\n\n{text}" if context else text
