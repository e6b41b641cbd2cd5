"""Retrieval quality through ragkeep's own /query: nDCG@10, recall@10 and recall@100 by document."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from cli.server import Server


def ndcg_at_10(ranked: Sequence[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def ranked_documents(server: Server, collection: str, question: str, depth: int) -> list[str]:
    """Documents in the order of their best chunk among the top ``depth`` chunks."""
    result = server.call(
        "POST", "/query", json={"collection": collection, "question": question, "top_k": depth, "mode": "retrieve"}
    )
    seen: list[str] = []
    for citation in result["citations"]:
        if citation["filename"] and citation["filename"] not in seen:
            seen.append(citation["filename"])
    return seen


def evaluate(
    server: Server, collection: str, items: Sequence[tuple[str, set[str]]], hybrid_too: bool = True
) -> dict[str, Any]:
    """Dense, then hybrid (switched by PATCHing the collection's retrieval config, as a user would)."""
    report: dict[str, Any] = {"queries": len(items)}
    for mode, hybrid in (("dense", False), ("hybrid", True))[: 2 if hybrid_too else 1]:
        server.call("PATCH", f"/collections/{collection}", json={"config": {"retrieval": {"hybrid": hybrid}}})
        ndcg, recall10, recall100, latencies = [], [], [], []
        for question, relevant in items:
            started = time.perf_counter()
            ranked = ranked_documents(server, collection, question, depth=100)
            latencies.append((time.perf_counter() - started) * 1000)
            ndcg.append(ndcg_at_10(ranked, relevant))
            recall10.append(len(set(ranked[:10]) & relevant) / len(relevant))
            recall100.append(len(set(ranked[:100]) & relevant) / len(relevant))
        latencies.sort()
        report[mode] = {
            "ndcg@10": round(sum(ndcg) / len(ndcg), 4),
            "recall@10": round(sum(recall10) / len(recall10), 4),
            "recall@100": round(sum(recall100) / len(recall100), 4),
            "p50_ms_top100": round(latencies[len(latencies) // 2], 1),
        }
    server.call("PATCH", f"/collections/{collection}", json={"config": {"retrieval": {"hybrid": False}}})
    return report
