"""The benchmark's corpora, read from ``../shared/datasets`` (never copied into the repository)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

# ``../shared/datasets`` beside the checkout; RAGKEEP_DATASETS points elsewhere (a clone made outside that
# folder). The tests read the same path (tests/conftest.py).
DATASETS = Path(
    os.environ.get("RAGKEEP_DATASETS", Path(__file__).resolve().parent.parent.parent / "shared" / "datasets")
).resolve()
SCIFACT = DATASETS / "beir-scifact"
ARAGOG = DATASETS / "aragog-arxiv-qa" / "source_files"
FINANCEBENCH = DATASETS / "financebench-subset"


def scifact_files(limit: int | None = None) -> list[tuple[str, bytes]]:
    """SciFact's abstracts as text documents ``<id>.txt`` (title, blank line, abstract)."""
    files = []
    for line in (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        files.append((f"{doc['_id']}.txt", f"{doc['title']}\n\n{doc['text']}".encode()))
    return files[:limit]


def scifact_queries(documents: set[str] | None = None) -> list[tuple[str, set[str]]]:
    """The 300 test queries with their relevant documents (only those within ``documents``, if given)."""
    texts = {
        (q := json.loads(line))["_id"]: q["text"]
        for line in (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    }
    relevant: dict[str, set[str]] = defaultdict(set)
    for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0 and (documents is None or f"{doc_id}.txt" in documents):
            relevant[query_id].add(f"{doc_id}.txt")
    return [(texts[q], docs) for q, docs in sorted(relevant.items())]


def aragog_files(limit: int | None = None) -> list[tuple[str, bytes]]:
    """The ARAGOG arXiv PDFs, smallest first (so a limited run takes the quick ones)."""
    paths = sorted(ARAGOG.glob("*.pdf"), key=lambda p: p.stat().st_size)[:limit]
    return [(p.name, p.read_bytes()) for p in paths]


def financebench_files(limit: int | None = None) -> list[tuple[str, bytes]]:
    """financebench-subset's filings (PDF), smallest first."""
    paths = sorted((FINANCEBENCH / "source_files").glob("*.pdf"), key=lambda p: p.stat().st_size)[:limit]
    return [(p.name, p.read_bytes()) for p in paths]


def jsquad() -> tuple[list[tuple[str, bytes]], list[tuple[str, set[str]]]]:
    """JSQuAD v1.3 valid: 59 Japanese articles, and every 4th question with its article."""
    folder = DATASETS / "jsquad-v1.3-valid"
    files = [(p.name, p.read_bytes()) for p in sorted((folder / "source_files").glob("*.txt"))]
    items = [json.loads(line) for line in (folder / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    return files, [(q["question"], {q["doc_id"]}) for q in items[::4]]
