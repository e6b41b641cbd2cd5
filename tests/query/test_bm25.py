from __future__ import annotations

from core.bm25 import BM25Index, tokenize


def test_latin_words_are_lowercased_stemmed_and_stopwords_dropped() -> None:
    assert tokenize("How many Vacation days do new hires get?") == ["mani", "vacat", "day", "new", "hire", "get"]


def test_japanese_runs_become_character_bigrams() -> None:
    assert tokenize("梅雨は日本") == ["梅雨", "雨は", "は日", "日本"]
    assert tokenize("雨") == ["雨"], "a single CJK character stays a unigram"


def test_cjk_punctuation_separates_runs() -> None:
    tokens = tokenize("雨季です。東京")
    assert "す東" not in tokens and "東京" in tokens


def test_search_ranks_the_matching_chunk_first_and_skips_non_matches() -> None:
    index = BM25Index.build(
        ["hr", "it", "jp"],
        ["New hires get twenty vacation days.", "Reset your password in the portal.", "梅雨は日本の雨季です。"],
    )
    assert [chunk for chunk, _ in index.search("vacation days for new hires", 5)] == ["hr"]
    assert [chunk for chunk, _ in index.search("日本の梅雨とは", 5)] == ["jp"]
    assert index.search("nothing matches here", 5) == []


def test_round_trip_through_bytes_keeps_scores() -> None:
    index = BM25Index.build(["a", "b"], ["alpha beta gamma", "beta delta"])
    restored = BM25Index.loads(index.dumps())
    assert restored.search("beta delta", 2) == index.search("beta delta", 2)


def test_empty_index_returns_nothing() -> None:
    assert BM25Index.build([], []).search("anything", 3) == []


def test_an_index_written_before_bm25s_still_loads_and_ranks_the_same() -> None:
    """Versions built before the switch to bm25s stored postings as JSON (format 1)."""
    import json
    import zlib

    ids, texts = ["a", "b", "c"], ["alpha beta gamma", "beta delta", "梅雨は日本の雨季です。"]
    postings: dict[str, list[tuple[int, int]]] = {}
    for position, text in enumerate(texts):
        for term in sorted(set(tokenize(text))):
            postings.setdefault(term, []).append((position, tokenize(text).count(term)))
    lengths = [len(tokenize(t)) for t in texts]
    old = {"ids": ids, "lengths": lengths, "postings": postings, "k1": 1.2, "b": 0.75, "format": 1}
    restored = BM25Index.loads(zlib.compress(json.dumps(old).encode()))
    current = BM25Index.build(ids, texts)
    for query in ("beta delta", "gamma", "日本の梅雨"):
        assert restored.search(query, 3) == current.search(query, 3)
