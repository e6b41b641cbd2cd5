from __future__ import annotations

from query.answer import cited_numbers, context_block, extractive_answer
from query.retrieval import Fusion, Hit


def _hit(chunk: str, text: str, score: float = 0.5, **metadata: object) -> Hit:
    return Hit(chunk, text, score, {"filename": f"{chunk}.txt", **metadata})


HITS = [
    _hit("leave", "Employees accrue leave monthly. New hires get 20 vacation days in their first year."),
    _hit("it", "Laptops are replaced every three years by the IT department."),
    _hit("travel", "Travel must be approved by a manager before booking any flights."),
]


def test_extractive_answer_quotes_the_matching_sentence_with_its_marker() -> None:
    answer = extractive_answer("How many vacation days do new hires get?", HITS)
    assert answer.mode == "extractive"
    assert "New hires get 20 vacation days in their first year [1]." in answer.text
    assert answer.cited == [1]
    assert "Laptops" not in answer.text


def test_extractive_answer_cites_several_sources_in_rank_order() -> None:
    answer = extractive_answer("vacation days and laptops replaced", HITS)
    assert answer.cited == [1, 2]
    assert answer.text.index("[1]") < answer.text.index("[2]")


def test_no_hits_means_no_answer() -> None:
    answer = extractive_answer("anything", [])
    assert (answer.text, answer.mode, answer.cited) == ("", "none", [])


def test_no_overlap_is_said_not_hidden() -> None:
    answer = extractive_answer("zzz qqq", HITS)
    assert answer.cited == [1] and answer.warnings


def test_no_overlap_with_only_short_chunks_still_quotes_and_cites_something() -> None:
    """Regression: a top chunk too short to count as a sentence (a title) gave an empty answer."""
    hits = [_hit("title", "Simple"), _hit("body", "A longer paragraph that is a proper sentence of the text.")]
    answer = extractive_answer("zzz qqq", hits)
    assert answer.text == "A longer paragraph that is a proper sentence of the text [2]." and answer.cited == [2]
    only_title = extractive_answer("zzz qqq", hits[:1])
    assert only_title.text == "Simple [1]." and only_title.cited == [1] and only_title.warnings


def test_japanese_question_matches_japanese_sentence() -> None:
    hits = [_hit("jp", "梅雨は、北海道と小笠原諸島を除く日本の雨季である。東京の夏は暑い。")]
    answer = extractive_answer("梅雨とは何ですか", hits)
    assert "梅雨は" in answer.text and "[1]" in answer.text and "東京" not in answer.text


def test_context_block_numbers_passages_with_their_source() -> None:
    block = context_block([_hit("a", "Alpha text.", page=4), _hit("b", "Beta text.")])
    assert block.startswith("[1] (a.txt, page 4)\nAlpha text.") and "\n\n[2] (b.txt)\nBeta text." in block


def test_cited_numbers_ignores_out_of_range_markers() -> None:
    assert cited_numbers("Yes [2][1], see [7] and [2].", available=3) == [1, 2]


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    rrf = Fusion("rrf")
    assert rrf.order([("a", 0.9), ("b", 0.8), ("c", 0.7)], [("b", 3.0), ("c", 2.0)])[:3] == ["b", "c", "a"]
    assert rrf.order([("a", 0.9)], [("b", 3.0)])[:1] == ["a"], "ties keep the first ranking's order"
