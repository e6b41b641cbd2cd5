"""False positives of the prompt-injection detector (``ingest/injection.py``) on the shared datasets.

None of these documents contains an injection, so every flagged chunk is a false positive
(or a document that really does carry instruction-like text: each one is printed to judge).
Files are parsed and chunked by ragkeep's own ingest path (Unstructured, the default
ingestion config); the JSONL corpora are scanned record by record (SciFact abstracts,
JSQuAD paragraphs, FinanceBench evidence passages).

    .venv/bin/python -m bench.injection_fp             # everything: ~35 min on 2 cores (parsing)
    .venv/bin/python -m bench.injection_fp --no-pdfs   # the JSONL corpora and small files only: a minute
    .venv/bin/python -m bench.injection_fp --cache /tmp/rk-chunks   # parse once, then re-scan in seconds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.datasets import DATASETS
from core.errors import DocumentParseError
from ingest import injection

# A naive keyword list, for comparison: what the detector's clause and object rules keep out.
NAIVE = {
    "ignore … instructions": re.compile(
        r"\b(?:ignore|disregard|forget)\b[^.\n]{0,40}\b(?:instructions?|prompts?|rules)\b", re.I
    ),
    "you are now": re.compile(r"\byou are now\b", re.I),
    "act as / pretend to be": re.compile(r"\b(?:act as|pretend to be|pretend you are)\b", re.I),
    "system prompt": re.compile(r"\bsystem prompt\b", re.I),
    "API keys / passwords": re.compile(r"\b(?:api[ _-]?keys?|passwords?|credentials)\b", re.I),
    "system: at a line start": re.compile(r"^\s*system\s*:", re.I | re.M),
    "zero-width character": re.compile("[\u200b\u200c\u200d\u2060\ufeff]"),
}

# Formats that need OCR or a hub model: Unstructured cannot read them offline, so they have no text.
_NO_TEXT = {".jpg", ".jpeg", ".png", ".heic", ".bmp", ".tiff", ".tif", ".gif", ".webp"}


@dataclass
class Source:
    name: str
    scanned: int = 0
    failed: int = 0
    seconds: float = 0.0
    flagged: list[tuple[str, list[str], str]] = field(default_factory=list)  # (where, patterns, text)
    naive: Counter[str] = field(default_factory=Counter)  # texts per naive keyword
    naive_texts: int = 0


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _records() -> Iterator[tuple[str, str, str]]:
    """(source, where, text) of the JSONL corpora's text fields."""
    for doc in _jsonl(DATASETS / "beir-scifact" / "corpus.jsonl"):
        yield "beir-scifact (abstracts)", str(doc["_id"]), f"{doc['title']}\n\n{doc['text']}"
    seen: set[str] = set()
    for item in _jsonl(DATASETS / "jsquad-v1.3-valid" / "qa.jsonl"):
        context = str(item.get("reference_context") or "")
        if context and context not in seen:
            seen.add(context)
            yield "jsquad (paragraphs)", str(item["id"]), context
    for item in _jsonl(DATASETS / "financebench-subset" / "qa.jsonl"):
        contexts = item.get("reference_contexts")
        for n, text in enumerate(contexts if isinstance(contexts, list) else []):
            yield "financebench (evidence passages)", f"{item['id']}#{n}", str(text)


def _files(pdfs: bool) -> Iterator[tuple[str, Path]]:
    for path in sorted((DATASETS / "unstructured-example-docs" / "files").iterdir()):
        if path.is_file() and path.suffix.lower() not in _NO_TEXT:
            yield "unstructured-example-docs", path
    for path in sorted((DATASETS / "jsquad-v1.3-valid" / "source_files").glob("*.txt")):
        yield "jsquad (articles)", path
    if not pdfs:
        return
    for folder, name in (
        ("aragog-arxiv-qa", "aragog (arXiv PDFs)"),
        ("llamaindex-blockchain-solana", "solana (PDF)"),
        ("financebench-subset", "financebench (SEC filing PDFs)"),
    ):
        for path in sorted((DATASETS / folder / "source_files").glob("*.pdf")):
            yield name, path


def _chunk_texts(path: Path, cache: Path | None) -> list[str]:
    """The chunk texts ragkeep makes of ``path`` (default ingestion config); raises for an unreadable file."""
    from core.config import IngestionConfig
    from core.filetypes import detect_file_kind
    from ingest.partition import partition_document

    data = path.read_bytes()
    config = IngestionConfig()
    cached = cache / f"{hashlib.sha256(data).hexdigest()[:20]}-{config.parse_hash()}.json" if cache else None
    if cached is not None and cached.exists():
        stored = json.loads(cached.read_text(encoding="utf-8"))
        if "error" in stored:
            raise DocumentParseError(stored["error"])
        return list(stored["texts"])
    try:
        texts = [c.text for c in partition_document(data, path.name, detect_file_kind(data, path.name), config)]
    except Exception as exc:  # unreadable files are counted, not fatal
        if cached is not None:
            cached.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        raise
    if cached is not None:
        cached.write_text(json.dumps({"texts": texts}, ensure_ascii=False), encoding="utf-8")
    return texts


def run(pdfs: bool, cache: Path | None = None) -> dict[str, Source]:

    sources: dict[str, Source] = {}

    def scan(source: str, where: str, text: str) -> None:
        entry = sources.setdefault(source, Source(source))
        entry.scanned += 1
        keywords = [name for name, pattern in NAIVE.items() if pattern.search(text)]
        entry.naive.update(keywords)
        entry.naive_texts += bool(keywords)
        found = injection.scan(text)
        if found:
            entry.flagged.append((where, found, text))

    started = time.monotonic()
    for source, where, text in _records():
        scan(source, where, text)
    records_seconds = time.monotonic() - started
    for entry in sources.values():
        entry.seconds = records_seconds / len(sources)
    for source, path in _files(pdfs):
        started = time.monotonic()
        try:
            texts = _chunk_texts(path, cache)
        except Exception as exc:  # a bench run reports an unreadable file and goes on
            print(f"  {path.name}: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            sources.setdefault(source, Source(source)).failed += 1
            continue
        for n, text in enumerate(texts):
            scan(source, f"{path.name} chunk {n}", text)
        sources.setdefault(source, Source(source)).seconds += time.monotonic() - started
        print(f"  {source}: {path.name} {len(texts)} chunks", file=sys.stderr, flush=True)
    return sources


def report(sources: dict[str, Source]) -> str:
    scanned = sum(s.scanned for s in sources.values())
    flagged = [f for s in sources.values() for f in s.flagged]
    naive = sum(s.naive_texts for s in sources.values())
    lines = [
        "| source | texts scanned | flagged | rate | naive keyword list |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in sources.values():
        failed = f" ({s.failed} files unreadable)" if s.failed else ""
        rate = len(s.flagged) / max(s.scanned, 1)
        lines.append(f"| {s.name}{failed} | {s.scanned:,} | {len(s.flagged)} | {rate:.3%} | {s.naive_texts} |")
    lines.append(
        f"| **all** | **{scanned:,}** | **{len(flagged)}** | **{len(flagged) / max(scanned, 1):.3%}** | **{naive}** |"
    )
    patterns = Counter(p for _, found, _ in flagged for p in found)
    keywords = sum((s.naive for s in sources.values()), Counter[str]())
    lines.append("")
    lines.append(f"Patterns that fired: {dict(patterns) or 'none'}")
    lines.append(f"Naive keywords that fired (texts): {dict(keywords.most_common()) or 'none'}")
    for s in sources.values():
        for where, found, text in s.flagged:
            snippet = " ".join(injection.revealed(text).split())
            hit = next(
                (m for p in found if p in injection.PATTERNS and (m := injection.PATTERNS[p].search(snippet))), None
            )
            if hit is not None:
                snippet = snippet[max(0, hit.start() - 80) : hit.end() + 80]
            lines.append(f"- {s.name} / {where}: {', '.join(found)}: …{snippet[:240]!r}…")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-pdfs", action="store_true", help="skip the PDFs (parsing them is most of the time)")
    parser.add_argument("--json", type=Path, help="also write the counts and the flagged texts here")
    parser.add_argument("--cache", type=Path, help="keep each file's chunks in this folder, for quick re-runs")
    args = parser.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sources = run(pdfs=not args.no_pdfs, cache=args.cache)
    print(report(sources))
    print(f"\n{time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    s.name: {
                        "scanned": s.scanned,
                        "failed": s.failed,
                        "flagged": [{"where": w, "patterns": f, "text": t} for w, f, t in s.flagged],
                    }
                    for s in sources.values()
                },
                ensure_ascii=False,
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
