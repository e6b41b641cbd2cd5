"""Retrieval quality through ragkeep's own /query, for the default config and for dense-only, side by side.

Each collection is asked every question twice: as created (the code's defaults, whatever they
are when the bench runs) and with ``retrieval.hybrid: false`` PATCHed in (dense-only,
otherwise the same), as a user would switch it; the collection's own value is restored after.
The datasets' questions and the metrics are the retrieval lab's (``bench/retrieval_lab.py``),
so the lab and the bench score a ranking the same way.

Metrics, by what the dataset's questions ask:

- nDCG@10 (SciFact test, JSQuAD valid): documents in the order of their best chunk among the
  top 100 chunks, with recall@10 and recall@100 beside it;
- doc hit@5 and MRR@5 (ARAGOG, FinanceBench): a reference document behind one of the 5 chunks
  an answer would be built from (top_k 5, as ``RetrievalConfig.top_k``'s default);
- evidence recall@5 (FinanceBench): a reference passage counts as found when its normalised
  first 120 characters occur in the text of those 5 chunks;
- reference recall@5 (multi-document questions): the share of a question's reference documents
  behind the top 5 chunks.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.retrieval_lab import (
    FINANCEBENCH,
    HIT_DEPTH,
    NDCG_DEPTH,
    Question,
    aragog_splits,
    documents_in_order,
    evidence_recall,
    financebench_splits,
    hit_at_k,
    jsquad_splits,
    ndcg_at_k,
    reference_recall_at_k,
    scifact_splits,
)
from cli.http_client import Server

MULTIDOC_FILE = Path(__file__).resolve().parent / "multidoc_financebench.json"

# Issue 16's targets for the default config (floors: the measured value must be at least this).
TARGETS: dict[tuple[str, str], float] = {
    ("scifact", "ndcg@10"): 0.74,
    ("jsquad", "ndcg@10"): 0.80,
    ("aragog", "hit@5"): 0.95,
    ("financebench", "hit@5"): 0.90,
}

CONFIGS = ("default", "dense")  # dense: retrieval.hybrid false, every other setting as the default


@dataclass(frozen=True)
class MultiDocQuestion:
    id: str
    text: str
    references: tuple[frozenset[str], ...]  # each found by any one of its documents


@dataclass(frozen=True)
class QualitySet:
    """One dataset's questions as the bench asks them."""

    name: str  # results key and TARGETS key
    questions: Sequence[Question | MultiDocQuestion]
    depth: int  # top_k asked of /query
    held_out: frozenset[str] | None = None  # ids never used for tuning (None: all of them)


def within(questions: Sequence[Question], documents: Collection[str]) -> list[Question]:
    """Questions whose relevant documents were ingested, each keeping only those (a limited run)."""
    kept = []
    for question in questions:
        relevant = question.relevant & frozenset(documents)
        if relevant:
            kept.append(Question(question.id, question.text, relevant, question.evidence))
    return kept


def _halves(splits: dict[str, list[Question]], documents: Collection[str]) -> tuple[list[Question], frozenset[str]]:
    """All of a halved dataset's questions, and the ids of the half the lab did not tune on."""
    questions = within(splits["tune"] + splits["report"], documents)
    return questions, frozenset(q.id for q in splits["report"])


def scifact_set(documents: Collection[str], limit: int | None = None) -> QualitySet:
    return QualitySet("scifact", within(scifact_splits()["test"], documents)[:limit], NDCG_DEPTH)


def aragog_set(documents: Collection[str]) -> QualitySet:
    questions, held_out = _halves(aragog_splits(), documents)
    return QualitySet("aragog", questions, HIT_DEPTH, held_out)


def financebench_set(documents: Collection[str]) -> QualitySet:
    questions, held_out = _halves(financebench_splits(), documents)
    return QualitySet("financebench", questions, HIT_DEPTH, held_out)


def jsquad_set(documents: Collection[str]) -> QualitySet:
    questions, held_out = _halves(jsquad_splits(), documents)
    return QualitySet("jsquad", questions, NDCG_DEPTH, held_out)


def multidoc_questions(path: Path = MULTIDOC_FILE) -> list[MultiDocQuestion]:
    """The hand-written multi-document questions over financebench-subset (``bench/multidoc_financebench.json``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    questions = []
    for item in data["questions"]:
        references = tuple(frozenset([r] if isinstance(r, str) else r) for r in item["references"])
        if len(references) < 2:
            raise ValueError(f"{item['id']}: a multi-document question needs two or more references")
        questions.append(MultiDocQuestion(item["id"], item["question"], references))
    return questions


def multidoc_set(documents: Collection[str], path: Path = MULTIDOC_FILE) -> QualitySet:
    """The questions all of whose references have an ingested document (all of them in a full run)."""
    present = frozenset(documents)
    questions = [q for q in multidoc_questions(path) if all(docs & present for docs in q.references)]
    return QualitySet("financebench multi-document", questions, HIT_DEPTH)


def multidoc_file_errors(path: Path = MULTIDOC_FILE) -> list[str]:
    """Reference documents that are not in financebench-subset (a typo in the hand-written file)."""
    names = {p.name for p in (FINANCEBENCH / "source_files").glob("*.pdf")}
    return [
        f"{q.id}: {doc}"
        for q in multidoc_questions(path)
        for docs in q.references
        for doc in sorted(docs)
        if doc not in names
    ]


def retrieve(server: Server, collection: str, question: str, top_k: int) -> list[dict[str, Any]]:
    """The citations /query returns in retrieve mode, best first."""
    body = {"collection": collection, "question": question, "top_k": top_k, "mode": "retrieve"}
    return list(server.call("POST", "/query", json=body)["citations"])


def score(question: Question | MultiDocQuestion, citations: Sequence[dict[str, Any]], depth: int) -> dict[str, float]:
    """One question's metrics from its ranked citations (the lab's metric functions)."""
    docs = [c["filename"] or "" for c in citations]
    if isinstance(question, MultiDocQuestion):
        return {
            "reference_recall@5": reference_recall_at_k(docs, question.references, 5),
            "all_references@5": float(reference_recall_at_k(docs, question.references, 5) == 1.0),
        }
    if depth >= NDCG_DEPTH:
        ranked = documents_in_order(docs)
        return {
            "ndcg@10": ndcg_at_k(ranked, question.relevant, 10),
            "recall@10": len(set(ranked[:10]) & question.relevant) / len(question.relevant),
            "recall@100": len(set(ranked[:100]) & question.relevant) / len(question.relevant),
        }
    ranked = documents_in_order(docs[:5])
    reciprocal = next((1 / rank for rank, doc in enumerate(ranked, start=1) if doc in question.relevant), 0.0)
    scores = {"hit@5": hit_at_k(docs, question.relevant, 5), "mrr@5": reciprocal}
    if question.evidence:
        scores["evidence_recall@5"] = evidence_recall(question.evidence, [c["text"] for c in citations[:5]])
    return scores


def _means(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        for metric, value in row.items():
            sums[metric] += value
            counts[metric] += 1
    return {metric: round(sums[metric] / counts[metric], 4) for metric in sums}


def measure(server: Server, collection: str, quality_set: QualitySet) -> dict[str, Any]:
    """Mean metrics over every question (and over the held-out half, if the lab tuned on the other)."""
    rows: list[dict[str, float]] = []
    held: list[dict[str, float]] = []
    latencies: list[float] = []
    for question in quality_set.questions:
        started = time.perf_counter()
        citations = retrieve(server, collection, question.text, quality_set.depth)
        latencies.append((time.perf_counter() - started) * 1000)
        row = score(question, citations, quality_set.depth)
        rows.append(row)
        if quality_set.held_out is not None and question.id in quality_set.held_out:
            held.append(row)
    latencies.sort()
    result: dict[str, Any] = _means(rows)
    if quality_set.held_out is not None:
        result["held_out"] = {"queries": len(held), **_means(held)}
    result[f"p50_ms_top{quality_set.depth}"] = round(latencies[len(latencies) // 2], 1) if latencies else None
    return result


def collection_retrieval(server: Server, collection: str) -> dict[str, Any]:
    return dict(server.call("GET", f"/collections/{collection}")["config"]["retrieval"])


def set_hybrid(server: Server, collection: str, hybrid: bool) -> None:
    server.call("PATCH", f"/collections/{collection}", json={"config": {"retrieval": {"hybrid": hybrid}}})


def with_each_config(
    server: Server, collection: str, configs: Sequence[str], run: Callable[[str], Any]
) -> dict[str, Any]:
    """``run(config)`` under each of ``configs`` ("default", "dense"); the collection's own config is restored."""
    own = collection_retrieval(server, collection)
    results: dict[str, Any] = {}
    try:
        for config in configs:
            set_hybrid(server, collection, own["hybrid"] if config == "default" else False)
            results[config] = run(config)
    finally:
        set_hybrid(server, collection, own["hybrid"])
    return results


def evaluate(
    server: Server, collection: str, quality_set: QualitySet, configs: Sequence[str] = CONFIGS
) -> dict[str, Any]:
    """The set's metrics under each config, with the default retrieval config they were measured with."""
    report: dict[str, Any] = {
        "collection": collection,
        "queries": len(quality_set.questions),
        "top_k": quality_set.depth,
        "default_retrieval": collection_retrieval(server, collection),
    }
    if quality_set.held_out is not None:
        report["held_out_queries"] = sum(q.id in quality_set.held_out for q in quality_set.questions)
    if not quality_set.questions:
        return report
    report |= with_each_config(server, collection, configs, lambda _: measure(server, collection, quality_set))
    targets = {metric: floor for (name, metric), floor in TARGETS.items() if name == quality_set.name}
    if targets and "default" in report:
        report["targets"] = {
            metric: {"floor": floor, "default": report["default"].get(metric), "pass": _passes(report, metric, floor)}
            for metric, floor in targets.items()
        }
    return report


def _passes(report: dict[str, Any], metric: str, floor: float) -> bool | None:
    value = report["default"].get(metric)
    return None if value is None else bool(value >= floor)
