"""make bench's quality section: scoring /query citations, the multi-document questions, and the tables.

No service here: the scoring is fed citations as /query returns them, and the tables results
shaped as bench/run.py writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import quality
from bench.quality import MultiDocQuestion, QualitySet, score, within
from bench.report import hybrid_cost_table, markdown, quality_table
from bench.retrieval_lab import FINANCEBENCH, Question, document_recall_at_k, reference_recall_at_k


def _citations(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"filename": name, "text": text} for name, text in pairs]


def test_reference_recall_counts_a_reference_found_by_any_of_its_documents() -> None:
    docs = ["a.pdf", "x.pdf", "c2.pdf", "y.pdf", "z.pdf", "b.pdf"]
    references = [frozenset({"a.pdf"}), frozenset({"b.pdf"}), frozenset({"c1.pdf", "c2.pdf"})]
    assert reference_recall_at_k(docs, references, 5) == pytest.approx(2 / 3)  # b.pdf is 6th
    assert reference_recall_at_k(docs, references, 6) == 1.0
    assert document_recall_at_k(docs, ["a.pdf", "b.pdf"], 5) == 0.5


def test_a_single_document_question_scores_hit_mrr_and_evidence_on_the_first_five_chunks() -> None:
    question = Question("q", "revenue?", frozenset({"right.pdf"}), ("Total  revenue 13,507 in the second quarter",))
    citations = _citations(
        ("wrong.pdf", "nothing"),
        ("wrong.pdf", "nothing either"),
        ("right.pdf", "... TOTAL revenue 13,507 in the second quarter, up 4%"),
        ("other.pdf", "x"),
        ("more.pdf", "y"),
    )
    scores = score(question, citations, 5)
    assert scores == {"hit@5": 1.0, "mrr@5": pytest.approx(1 / 2), "evidence_recall@5": 1.0}
    # The same passage as the sixth chunk is not among the five an answer is built from.
    late = score(question, _citations(*[("wrong.pdf", "n")] * 5, ("right.pdf", "total revenue 13,507")), 5)
    assert late == {"hit@5": 0.0, "mrr@5": 0.0, "evidence_recall@5": 0.0}


def test_a_ranking_question_scores_documents_by_their_best_chunk() -> None:
    question = Question("q", "claim", frozenset({"1.txt", "2.txt"}))
    citations = _citations(("1.txt", ""), ("1.txt", ""), ("3.txt", ""), ("2.txt", ""))
    scores = score(question, citations, 100)
    ideal = 1 + 1 / 1.584962500721156
    assert scores["ndcg@10"] == pytest.approx((1 + 0.5) / ideal)  # documents 1.txt, 3.txt, 2.txt
    assert scores["recall@10"] == 1.0


def test_a_multi_document_question_scores_the_share_of_references_in_the_top_five() -> None:
    question = MultiDocQuestion("md", "compare", (frozenset({"a.pdf"}), frozenset({"b.pdf"})))
    assert score(question, _citations(("a.pdf", ""), ("c.pdf", "")), 5) == {
        "reference_recall@5": 0.5,
        "all_references@5": 0.0,
    }


def test_a_limited_run_keeps_the_questions_about_ingested_documents() -> None:
    questions = [Question("1", "a", frozenset({"x", "y"})), Question("2", "b", frozenset({"z"}))]
    assert within(questions, {"x"}) == [Question("1", "a", frozenset({"x"}))]


def test_the_hand_written_multi_document_questions_are_well_formed() -> None:
    questions = quality.multidoc_questions()
    assert 15 <= len(questions) <= 25
    assert len({q.id for q in questions}) == len(questions)
    assert all(len(q.references) >= 2 for q in questions)
    if not (FINANCEBENCH / "source_files").is_dir():
        pytest.skip("financebench-subset is not in ../shared/datasets")
    assert quality.multidoc_file_errors() == []


def test_a_multi_document_file_with_one_reference_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "md.json"
    path.write_text('{"questions": [{"id": "x", "question": "q", "references": ["a.pdf"]}]}')
    with pytest.raises(ValueError, match="two or more references"):
        quality.multidoc_questions(path)


def _results(*, finished: bool = True) -> dict[str, Any]:
    run = {"requests": 10, "errors": 0, "p50_ms": 10.0, "p95_ms": 12.0, "p99_ms": 13.0, "rps": 90.0}
    cost = [
        {"target": "ragkeep /query", "mode": mode, "concurrency": 1, "model": "m", **run, "p50_ms": p50}
        for mode, p50 in (
            ("retrieve, top_k 10, default (hybrid on)", 12.0),
            ("retrieve, top_k 100, default (hybrid on)", 90.0),
            ("retrieve, top_k 10, dense-only", 10.0),
            ("retrieve, top_k 100, dense-only", 30.0),
            ("retrieve, top_k 100, dense-only, no cap", 20.0),
        )
    ]
    ingest = {"documents": 1, "chunks": 2, "seconds": 1.0, "chunks_per_s": 2.0}
    results: dict[str, Any] = {
        "date": "2026-11-30T21:00:00+00:00",
        "machine": "test machine",
        "model": "all-MiniLM-L6-v2",
        "load_average": {"start": 3.0, "end": 4.0, "cores": 2},
        "note": "Other work ran.",
        "floor": {"threads": 2, "sample_chunks": 10},
        "ingestion": {
            "scifact": {
                "corpus": "SciFact",
                "ragkeep": {**ingest, "upload_seconds": 0.1, "worker_embed_seconds": 0.5, "build_seconds": 0.2},
            }
        },
        "incremental": {
            "full_seconds": 1.0,
            "seconds": 0.5,
            "build_seconds": 0.1,
            "embedded_chunks": 1,
            "reused_chunks": 1,
        },
        "latency": {"top_k": 5, "max_requests": 10, "max_seconds": 1.0, "runs": cost},
        "quality": {
            "scifact": {
                "queries": 3,
                "default_retrieval": {"top_k": 5, "hybrid": True, "fusion": "minmax"},
                "default": {"ndcg@10": 0.75, "recall@10": 0.9},
                "dense": {"ndcg@10": 0.70, "recall@10": 0.85},
                "targets": {"ndcg@10": {"floor": 0.74, "default": 0.75, "pass": True}},
            },
            "financebench": {
                "queries": 4,
                "default": {"hit@5": 0.85, "evidence_recall@5": 0.5, "held_out": {"queries": 2, "hit@5": 0.5}},
                "dense": {"hit@5": 0.6, "evidence_recall@5": 0.25, "held_out": {"queries": 2, "hit@5": 0.4}},
                "targets": {"hit@5": {"floor": 0.9, "default": 0.85, "pass": False}},
            },
            "jsquad": {"error": "RuntimeError: boom"},
        },
    }
    if finished:
        results["bench_seconds"] = 60.0
    return results


def test_the_quality_table_sets_default_and_dense_side_by_side_against_the_targets() -> None:
    rows = quality_table(_results())
    assert "| scifact | 3 | nDCG@10 | 0.750 | 0.700 | +0.050 | ≥ 0.74: pass |  |" in rows
    assert "| financebench | 4 | doc hit@5 | 0.850 | 0.600 | +0.250 | ≥ 0.90: **fail** | 0.500 / 0.400 |" in rows
    assert not any("jsquad" in row for row in rows)


def test_the_cost_table_divides_the_default_p50_by_dense_at_each_top_k() -> None:
    rows = hybrid_cost_table(_results())
    assert rows[2] == "| 10 | 12.0 | 10.0 | 1.20x | ≤ 1.3x: pass | - | - |"
    assert rows[3] == "| 100 | 90.0 | 30.0 | 3.00x | ≤ 2.0x: **fail** | 20.0 | 4.50x |"


def test_the_report_says_what_was_not_measured_and_when_a_run_is_partial() -> None:
    text = markdown(_results())
    assert "- jsquad: not measured (RuntimeError: boom)" in text
    assert "Load average (1 min) at the start 3.0, at the end 4.0, on 2 cores. Other work ran." in text
    assert "hybrid True, fusion minmax" in text
    assert "a partial run" in markdown(_results(finished=False))


def test_an_empty_quality_set_is_reported_without_asking_the_service() -> None:
    class NoServer:
        def call(self, method: str, path: str, **_: Any) -> Any:
            assert (method, path) == ("GET", "/collections/c")
            return {"config": {"retrieval": {"hybrid": True}}}

    report = quality.evaluate(NoServer(), "c", QualitySet("aragog", [], 5))  # type: ignore[arg-type]
    assert report["queries"] == 0
    assert "default" not in report
