"""Fusion of dense and BM25 rankings, and the per-document cap."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import RetrievalConfig
from query.retrieval import AUTO_TITLE_WEIGHT, Fusion, capped, fuse_ids


def test_equal_weights_are_plain_reciprocal_rank_fusion() -> None:
    assert fuse_ids([["a", "b", "c"], ["b", "c"]], [1.0, 1.0]) == ["b", "c", "a"]


def test_a_heavier_dense_weight_keeps_dense_agreement_ahead_of_a_lone_bm25_match() -> None:
    dense, bm25 = ["d1", "d2", "d3"], ["x", "d2"]
    assert fuse_ids([dense, bm25], [1.0, 1.0])[0] == "d2"
    assert fuse_ids([dense, bm25], [1.0, 1.0]).index("x") < fuse_ids([dense, bm25], [2.0, 1.0]).index("x")
    assert fuse_ids([dense, bm25], [1.0, 0.0])[:3] == dense, "a zero weight is dense alone"


def test_the_cap_gives_other_documents_the_places_one_document_would_fill() -> None:
    order = ["r1:0", "r1:1", "r1:2", "r2:0", "r1:3", "r3:5"]
    assert capped(order, 3, None) == ["r1:0", "r1:1", "r1:2"]
    assert capped(order, 3, 1) == ["r1:0", "r2:0", "r3:5"]
    assert capped(order, 4, 2) == ["r1:0", "r1:1", "r2:0", "r3:5"]
    # Too few other documents: the chunks passed over fill the places left, in order.
    assert capped(order, 5, 1) == ["r1:0", "r2:0", "r3:5", "r1:1", "r1:2"]
    assert capped(order, 10, 2) == ["r1:0", "r1:1", "r2:0", "r3:5", "r1:2", "r1:3"]


def test_score_fusion_weighs_each_lists_scaled_scores() -> None:
    """min-max: each list scaled to [0, 1] over its candidates, then a weighted sum; a candidate
    missing from a list gets 0 there. Ranks alone would put c (BM25's best) before b."""
    dense = [("a", 0.8), ("b", 0.6), ("c", 0.4)]
    bm25 = [("c", 10.0), ("a", 5.0)]
    assert Fusion("minmax", 0.7, 0.3).order(dense, bm25) == ["a", "b", "c"]  # 0.7, 0.35, 0.3
    assert Fusion("rrf").order(dense, bm25) == ["a", "c", "b"]
    assert Fusion("minmax", 0.0, 1.0).order(dense, bm25)[:2] == ["c", "a"]
    assert Fusion("minmax").order([("a", 0.5)], []) == ["a"]


def test_unset_weights_follow_the_question_script_and_set_ones_are_kept() -> None:
    """0.5 / 0.5 for every question put FinanceBench below dense-only and JSQuAD needs BM25 to lead."""
    auto = RetrievalConfig()
    title = AUTO_TITLE_WEIGHT
    assert Fusion.for_question(auto, "What was 3M's revenue in FY2018?") == Fusion(
        "minmax", 0.6, 0.4, title_weight=title
    )
    for question in ("日本で梅雨がないのは北海道とどこか。", "知识库里有什么", "무엇입니까?"):
        assert Fusion.for_question(auto, question) == Fusion("minmax", 0.3, 0.7, title_weight=title)
    assert Fusion.for_question(RetrievalConfig(dense_weight=0.5, bm25_weight=0.5), "北海道") == Fusion(
        "minmax", 0.5, 0.5, title_weight=title
    )
    assert Fusion.for_question(RetrievalConfig(fusion="rrf", bm25_weight=2.0), "why") == Fusion("rrf", 0.6, 2.0)


def test_the_title_match_lifts_the_chunks_of_the_document_the_question_names() -> None:
    """Two filings' identical lines score alike; the question's match with their titles decides."""
    dense = [("r2018:4", 0.71), ("r2022:4", 0.70), ("other:1", 0.40)]
    bm25 = [("r2018:4", 9.0), ("r2022:4", 9.0)]
    titles = {"r2022": 1.0, "r2018": 0.55}
    assert Fusion("minmax", 0.6, 0.4).order(dense, bm25, titles)[0] == "r2018:4", "no weight: no effect"
    assert Fusion("minmax", 0.6, 0.4, title_weight=0.2).order(dense, bm25, titles)[:2] == ["r2022:4", "r2018:4"]
    assert Fusion("minmax", 0.6, 0.4, title_weight=0.2).order(dense, bm25, {})[0] == "r2018:4", "no titles stored"
    assert Fusion("rrf", title_weight=0.2).order(dense, bm25, titles)[0] == "r2018:4", "rank fusion has no scores"


def test_the_title_weight_is_automatic_for_minmax_set_when_given_and_never_for_rrf() -> None:
    assert Fusion.for_question(RetrievalConfig(), "3M 2018").title_weight == AUTO_TITLE_WEIGHT == 0.2
    assert Fusion.for_question(RetrievalConfig(title_weight=0.5), "3M 2018").title_weight == 0.5
    assert Fusion.for_question(RetrievalConfig(title_weight=0.0), "3M 2018").title_weight == 0.0
    assert Fusion.for_question(RetrievalConfig(fusion="rrf"), "3M 2018").title_weight == 0.0
    with pytest.raises(ValidationError, match="minmax only"):
        RetrievalConfig(fusion="rrf", title_weight=0.5)
