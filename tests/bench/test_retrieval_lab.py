"""The retrieval lab's metrics, fusions and selection on tiny synthetic data (no model, no parsing)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.retrieval_lab import (
    Candidates,
    Corpus,
    Dataset,
    LabConfig,
    Loaded,
    Question,
    cap_per_document,
    document_recall_at_k,
    document_title,
    documents_in_order,
    evaluate,
    evidence_recall,
    filename_words,
    hit_at_k,
    holdout,
    mmr,
    ndcg_at_k,
    normalise,
    normalised_scores,
    parse_config,
    parsed_chunks,
    rrf,
    score_fusion,
    summary_table,
    title_hook,
    title_section_hook,
)
from core.config import IngestionConfig


def test_ndcg_counts_each_relevant_document_once_at_its_best_rank() -> None:
    ranked = documents_in_order(["b", "a", "b", "c"])
    assert ranked == ["b", "a", "c"]
    assert ndcg_at_k(ranked, {"a"}) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(ranked, {"b", "a"}) == pytest.approx(1.0)
    assert ndcg_at_k(ranked, {"z"}) == 0.0
    assert ndcg_at_k(["x"] * 10 + ["a"], {"a"}) == 0.0, "beyond rank 10 counts nothing"


def test_hit_and_document_recall_read_only_the_first_k_chunks() -> None:
    docs = ["a", "a", "b", "c", "d", "e"]
    assert hit_at_k(docs, {"d"}, 5) == 1.0
    assert hit_at_k(docs, {"e"}, 5) == 0.0
    assert document_recall_at_k(docs, {"a", "e"}, 5) == 0.5


def test_evidence_matches_a_normalised_prefix_even_across_two_retrieved_chunks() -> None:
    passage = "Net  Sales\nwere $1,577 million " + "x" * 200
    assert normalise(" Net  Sales\n were ") == "net sales were"
    chunks = ["Total: NET SALES were", "$1,577   million " + "X" * 130]
    assert evidence_recall([passage], chunks) == 1.0
    assert evidence_recall([passage, "something else entirely"], chunks) == 0.5
    assert evidence_recall([passage], ["net sales were $1,577 billion"]) == 0.0
    assert evidence_recall([], chunks) == 0.0


def test_rrf_with_equal_weights_adds_reciprocal_ranks_like_the_service() -> None:
    # 1: 1/61 + 1/63 ; 2: 1/62 + 1/61 ; 3: 1/63 ; 4: 1/62
    assert rrf([[1, 2, 3], [2, 4, 1]]) == [2, 1, 4, 3]


def test_weighted_rrf_lets_the_heavier_list_win() -> None:
    assert rrf([[1, 2], [2, 1]], [0.9, 0.1])[0] == 1
    assert rrf([[1, 2], [2, 1]], [0.1, 0.9])[0] == 2
    assert rrf([[1, 2], [3]], k=1) == [1, 3, 2]


def test_minmax_fusion_scales_each_list_and_treats_a_missing_candidate_as_its_worst() -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.5)]
    lexical = [(3, 30.0), (4, 10.0)]
    assert normalised_scores(dense, "minmax") == pytest.approx({1: 1.0, 2: 0.75, 3: 0.0})
    # 1: 0.5*1 + 0 ; 2: 0.375 ; 3: 0 + 0.5*1 ; 4: 0 + 0
    assert score_fusion([dense, lexical], [0.5, 0.5], "minmax") == [1, 3, 2, 4]
    assert score_fusion([dense, lexical], [0.2, 0.8], "minmax")[0] == 3


def test_zscore_fusion_handles_constant_and_empty_lists() -> None:
    assert normalised_scores([(1, 2.0), (2, 2.0)], "zscore") == {1: 0.0, 2: 0.0}
    assert normalised_scores([], "zscore") == {}
    assert score_fusion([[(1, 0.9), (2, 0.1)], []], [0.5, 0.5], "zscore") == [1, 2]


def test_per_document_cap_skips_extra_chunks_of_a_document() -> None:
    doc_of = [0, 0, 0, 1, 2]
    assert cap_per_document([0, 1, 2, 3, 4], doc_of, cap=1, k=3) == [0, 3, 4]
    assert cap_per_document([0, 1, 2, 3, 4], doc_of, cap=2, k=3) == [0, 1, 3]


def test_mmr_prefers_a_different_chunk_over_a_near_duplicate() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert mmr([0, 1, 2], vectors, lam=0.5, k=2) == [0, 2]
    assert mmr([0, 1, 2], vectors, lam=1.0, k=2) == [0, 1], "lambda 1 is plain relevance"


def test_holdout_is_a_stable_disjoint_split() -> None:
    questions = [Question(f"q{i}", f"text {i}", frozenset({"d"})) for i in range(200)]
    halves = holdout(questions)
    assert {q.id for q in halves["tune"]}.isdisjoint({q.id for q in halves["report"]})
    assert len(halves["tune"]) + len(halves["report"]) == 200
    assert 60 < len(halves["tune"]) < 140
    assert holdout(list(reversed(questions)))["tune"][::-1] == halves["tune"]


def test_config_names_parse_into_settings() -> None:
    assert parse_config("dense") == LabConfig("dense")
    assert parse_config("hybrid").fusion == "rrf" and parse_config("hybrid").mode == "hybrid"
    weighted = parse_config("minmax:0.7@title_section+cap=2+pool=50")
    assert (weighted.fusion, weighted.w_dense, weighted.w_bm25) == ("minmax", 0.7, 0.3)
    assert (weighted.hook, weighted.per_doc_cap, weighted.pool) == ("title_section", 2, 50)
    assert parse_config("wrrf:0.6+k=20").rrf_k == 20
    assert parse_config("minmax:0.6+title=0.2").title_weight == 0.2
    assert not parse_config("minmax:0.6+title=0.2").title_by_length
    by_length = parse_config("minmax:0.6+titlen=0.3")
    assert (by_length.title_weight, by_length.title_by_length) == (0.3, True)
    with pytest.raises(ValueError):
        parse_config("rrf+title=0.2")
    with pytest.raises(ValueError):
        parse_config("dense@nope")
    with pytest.raises(ValueError):
        parse_config("cosine")


class _Chunk:
    def __init__(self, section: str) -> None:
        self.metadata = {"section": section}


def test_document_title_falls_back_from_metadata_to_title_element_to_filename() -> None:
    assert document_title(b"plain text", "a.txt", [_Chunk(""), _Chunk("Graph Methods")]) == "Graph Methods"
    assert document_title(b"plain text", "JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf", []) == (
        "JOHNSON JOHNSON 2022Q4 EARNINGS"
    )
    assert document_title(b"x", "4983.txt", [_Chunk("12")]) == "4983", "a title without words is trivial"
    assert filename_words("red-teaming.v2.pdf") == "red teaming v2"


def test_hooks_put_the_title_and_a_distinct_section_above_the_chunk() -> None:
    assert title_hook("body", {}, "Doc") == "Doc\n\nbody"
    assert title_section_hook("body", {"section": "Results"}, "Doc") == "Doc — Results\n\nbody"
    assert title_section_hook("body", {"section": "doc"}, "Doc") == "Doc\n\nbody"


def test_evaluate_scores_dense_bm25_and_fused_rankings_of_cached_candidates() -> None:
    corpus = Corpus(
        doc_names=["a", "b", "c"],
        chunk_doc=np.array([0, 0, 1, 2], dtype=np.int32),
        chunk_texts=["alpha one", "alpha two", "beta", "gamma"],
        index_texts=["alpha one", "alpha two", "beta", "gamma"],
        vectors=np.eye(4, dtype=np.float32),
        titles=["a", "b", "c"],
    )
    pad = np.full(2, -1)
    found = Candidates(
        ["q"],
        dense_ids=np.array([[0, 1, 2, 3]]),
        dense_scores=np.array([[0.9, 0.8, 0.7, 0.1]]),
        bm25_ids=np.array([np.concatenate([[2, 3], pad])]),
        bm25_scores=np.array([[5.0, 1.0, 0.0, 0.0]]),
        dense_ms=np.array([1.0]),
        bm25_ms=np.array([2.0]),
    )
    dataset = Dataset("toy", list, dict, "tune", "report", "hit@5", depth=2)
    loaded = Loaded(dataset, corpus, found, {"tune": [Question("q", "beta?", frozenset({"b"}), ("BETA",))]})
    assert evaluate(parse_config("dense"), loaded, "tune")["hit@5"] == 0.0
    assert evaluate(parse_config("dense+cap=1"), loaded, "tune")["hit@5"] == 1.0
    fused = evaluate(parse_config("rrf"), loaded, "tune")
    assert fused["hit@5"] == 1.0 and fused["evidence_recall@5"] == 1.0
    assert fused["p50_ms"] >= 3.0, "the time includes both searches"
    assert evaluate(parse_config("bm25"), loaded, "tune")["mrr@5"] == 1.0


def test_summary_has_a_line_per_config_and_a_column_per_dataset_metric_of_the_chosen_split() -> None:
    rows = [
        {"dataset": "scifact", "split": "test", "config": "dense", "ndcg@10": 0.66, "recall@10": 0.8},
        {"dataset": "scifact", "split": "train", "config": "dense", "ndcg@10": 0.1},
        {"dataset": "aragog", "split": "report", "config": "rrf", "hit@5": 1.0, "mrr@5": 0.96},
    ]
    lines = summary_table(rows).splitlines()
    assert lines[0] == "| config | scifact ndcg@10 | aragog hit@5 | aragog mrr@5 |"
    assert lines[2:] == ["| `dense` | 0.6600 |  |  |", "| `rrf` |  | 1.0000 | 0.9600 |"]
    assert "0.1000" in summary_table(rows, "tune")


@pytest.mark.slow
def test_rrf_orders_like_the_service_fusion() -> None:
    """Slow only because importing query.retrieval loads Chroma and LlamaIndex."""
    from query.retrieval import Fusion

    rng = np.random.default_rng(7)
    for _ in range(20):
        lists = [rng.permutation(30)[:20].tolist() for _ in range(2)]
        dense, bm25 = ([(str(c), 0.0) for c in ranking] for ranking in lists)
        assert [int(c) for c in Fusion("rrf").order(dense, bm25)[:10]] == rrf(lists)[:10]


def test_a_title_weight_lifts_the_chunks_of_the_document_whose_title_the_question_names() -> None:
    corpus = Corpus(
        doc_names=["acme-2022.pdf", "acme-2023.pdf"],
        chunk_doc=np.array([0, 1], dtype=np.int32),
        chunk_texts=["revenue 10", "revenue 12"],
        index_texts=["revenue 10", "revenue 12"],
        vectors=np.eye(2, dtype=np.float32),
        titles=["ACME 2022 10K", "ACME 2023 10K"],
    )
    found = Candidates(
        ["q"],
        dense_ids=np.array([[0, 1]]),
        dense_scores=np.array([[0.9, 0.8]]),
        bm25_ids=np.array([[0, 1]]),
        bm25_scores=np.array([[2.0, 1.9]]),
        dense_ms=np.array([1.0]),
        bm25_ms=np.array([1.0]),
    )
    dataset = Dataset("toy", list, dict, "tune", "report", "hit@5", depth=1)
    question = Question("q", "What was ACME's revenue in 2023?", frozenset({"acme-2023.pdf"}))
    loaded = Loaded(dataset, corpus, found, {"tune": [question]})
    assert evaluate(parse_config("minmax:0.6"), loaded, "tune")["hit@5"] == 0.0
    assert evaluate(parse_config("minmax:0.6+title=1.5"), loaded, "tune")["hit@5"] == 1.0
    # As /query weighs it (1 - 1/n for a document of n chunks), one-chunk documents' titles count for nothing.
    assert evaluate(parse_config("minmax:0.6+titlen=1.5"), loaded, "tune")["hit@5"] == 0.0


def test_parsing_in_worker_processes_gives_the_same_chunks_in_the_files_order(tmp_path: Path) -> None:
    files = [
        ("alpha.txt", b"Alpha results\n\nThe alpha trial enrolled 120 patients and met its endpoint."),
        ("beta.txt", b"Beta methods\n\nBeta cells were counted by flow cytometry in 40 samples."),
        ("blank.txt", b"   \n"),
    ]
    dataset = Dataset("toy", lambda: files, dict, "tune", "report", "hit@5", depth=5)
    alone = parsed_chunks(dataset, IngestionConfig(), tmp_path / "one")
    side_by_side = parsed_chunks(dataset, IngestionConfig(), tmp_path / "two", workers=2)
    assert [d["name"] for d in side_by_side["documents"]] == ["alpha.txt", "beta.txt"]
    assert side_by_side["documents"] == alone["documents"]
    assert side_by_side["failures"] == alone["failures"] and "blank.txt" in alone["failures"]
