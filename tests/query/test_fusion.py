"""Fusion of dense and BM25 rankings, and the per-document cap."""

from __future__ import annotations

from query.retrieval import capped, fuse_ids


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
    assert capped(order, 10, 2) == ["r1:0", "r1:1", "r2:0", "r3:5"]
