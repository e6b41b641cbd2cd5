from __future__ import annotations

from core.bm25 import BM25Index, title_tokens, tokenize


def test_latin_words_are_lowercased_stemmed_and_stopwords_dropped() -> None:
    assert tokenize("How many Vacation days do new hires get?") == ["mani", "vacat", "day", "new", "hire", "get"]


def test_japanese_runs_become_character_bigrams() -> None:
    assert tokenize("梅雨は日本") == ["梅雨", "雨は", "は日", "日本"]
    assert tokenize("雨") == ["雨"], "a single CJK character stays a unigram"


def test_digits_and_latin_letters_do_not_swallow_the_cjk_text_after_them() -> None:
    assert tokenize("2014年現在の面積は") == ["2014", "年現", "現在", "在の", "の面", "面積", "積は"]
    assert tokenize("GPT3は2020年") == ["gpt3", "は", "2020", "年"]
    assert tokenize("2014년 현재") == ["2014", "년", "현재"]


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


def test_title_match_scores_documents_by_their_titles_over_the_best_and_survives_the_round_trip() -> None:
    titles = {"r1": "Document: 3M 2018 10K", "r2": "Document: 3M 2022 10K", "r3": "Document: Boeing 2022 10K"}
    index = BM25Index.build(["r1:0", "r2:0", "r3:0"], ["Total revenue 32,765", "Total revenue 34,229", "x"], titles)
    match = index.title_match("What was 3M's revenue in 2022?")
    assert match["r2"] == 1.0 and 0 < match["r1"] < 1 and 0 < match["r3"] < 1, "3M and 2022 both count"
    assert BM25Index.loads(index.dumps()).title_match("What was 3M's revenue in 2022?") == match
    assert index.title_match("dividends of Pepsico") == {}, "no title shares a term"


def test_an_index_without_titles_matches_no_title() -> None:
    """Versions built before titles were stored (and collections with ``ingestion.context: off``)."""
    index = BM25Index.loads(BM25Index.build(["a:0"], ["3M 2022 revenue"]).dumps())
    assert index.titles == {} and index.title_match("3M 2022") == {}


def test_titles_match_the_way_file_names_write_them() -> None:
    """File names run words and numbers together ("BESTBUY_2019_10K.pdf"); questions do not ("Best Buy", "FY2019")."""
    assert title_tokens("Document: BESTBUY 2024Q2 10Q") == ["document", "bestbuy", "2024", "q", "2", "10", "q"]
    assert "bestbuy" in title_tokens("inventories of Best Buy in FY2019", query=True)
    assert "2019" in title_tokens("inventories of Best Buy in FY2019", query=True)
    titles = {
        "bb19": "Document: BESTBUY 2019 10K",
        "bb23": "Document: BESTBUY 2023 10K",
        "ax": "Document: AMCOR 2019 10K",
    }
    match = BM25Index.build([], [], titles).title_match("What were Best Buy's inventories at the end of FY2019?")
    assert match["bb19"] == 1.0 > match["bb23"] > 0 and match["bb19"] > match["ax"] > 0


def test_title_match_can_be_asked_for_some_documents_and_still_scales_by_the_best_of_all() -> None:
    titles = {"a": "Document: ACME 2022 10K", "b": "Document: ACME 2018 10K", "c": "Document: Globex 2022 10K"}
    index = BM25Index.build([], [], titles)
    every = index.title_match("Acme 2022")
    assert index.title_match("Acme 2022", ["b", "c", "unknown"]) == {"b": every["b"], "c": every["c"]}
    assert every["a"] == 1.0 and index.title_match("Acme 2022", ["b"])["b"] < 1.0


def test_named_is_the_share_of_a_title_the_question_holds_weighed_by_rarity_among_titles() -> None:
    """The abstention signal ``named``: whether the question names a document of the version at all."""
    titles = {
        "b18": "Document: BOEING 2018 10K",
        "b22": "Document: BOEING 2022 10K",
        "m18": "Document: 3M 2018 10K",
        "p22": "Document: PEPSICO 2022 10K",
    }
    index = BM25Index.loads(BM25Index.build([], [], titles).dumps())
    full = index.named("What was Boeing's revenue in FY2022?")
    sibling = BM25Index.build([], [], {k: v for k, v in titles.items() if k != "b22"}).named(
        "What was Boeing's revenue in FY2022?"
    )
    absent = BM25Index.build([], [], {k: v for k, v in titles.items() if k not in ("b18", "b22")}).named(
        "What was Boeing's revenue in FY2022?"
    )
    assert full > 0.8, "company and year: all but the terms every title has (Document, 10, K)"
    assert full > sibling > absent, "another year of the company names it in part; another company hardly"
    assert absent < 0.5
    assert index.named("How do plants fix nitrogen?") == 0.0
    assert BM25Index.build(["a:0"], ["Boeing 2022"]).named("Boeing 2022") == 0.0, "no titles: nothing named"


def test_each_part_of_a_title_line_names_the_document_on_its_own() -> None:
    """A PDF's own title is often an accession number; its file name (in parentheses) carries company and year."""
    titles = {
        "b22": "Document: 0000012927-23-000007 (BOEING 2022 10K)",
        "p22": "Document: 0000077476-23-000007 (PEPSICO 2022 10K)",
        "m18": "Document: 10-K - 02/07/2019 - 3M Company (3M 2018 10K)",
    }
    index = BM25Index.build([], [], titles)
    assert index.named("What was Boeing's revenue in FY2022?") > 0.8
    assert index.named("What did 3M Company report?") > index.named("What did Pepsico report?") > 0
    assert index.named("What was Pfizer's revenue?") == 0.0


def test_period_says_whether_the_documents_a_question_names_carry_the_year_it_asks_about() -> None:
    """The abstention signal ``period``: "Boeing FY2023" where Boeing's only filing is of 2018 is 0."""
    titles = {
        "b18": "Document: 0000012927-19-000010 (BOEING_2018_10K.pdf)",
        "m18": "Document: 10-K - 02/07/2019 - 3M Company (3M_2018_10K.pdf)",
        "bb17": "Document: 0000764478-17-000008 (BESTBUY_2017_10K.pdf)",
        "bb23": "Document: 0000764478-23-000006 (BESTBUY_2023_10K.pdf)",
    }
    index = BM25Index.loads(BM25Index.build([], [], titles).dumps())
    assert index.period("What production rate changes is Boeing forecasting for FY2023?") == 0.0
    assert index.period("What was Boeing's revenue in FY2018?") == 1.0
    assert index.period("What was 3M's capital expenditure in FY2022?") == 0.0, "3M is 3, m: still a name"
    assert index.period("What was 3M's capital expenditure in FY2019?") == 0.0, "filed in 2019, about 2018"
    assert index.period("Best Buy's inventories at the end of FY2019?") == 0.0, "neither Best Buy filing is of 2019"
    assert index.period("Best Buy's store count in FY2023?") == 1.0
    assert index.period("Is Boeing's business cyclical?") == 1.0, "no year asked: nothing to tell"
    assert index.period("How did Best Buy's margin move from FY2017 to FY2023?") == 1.0
    assert index.period("How did Boeing's margin move from FY2018 to FY2019?") == 0.0, "the latest year counts"
    assert index.period("What was Pfizer's revenue in 2021?") == 1.0, "no titled document named: nothing to tell"
    assert index.period("What did the 10K filings of 2021 say?") == 1.0, "terms every title holds name nothing"
    headed = BM25Index.build(
        [],
        [],
        titles
        | {
            "c22": "Document: Item 1. Business (CORNING 2022 10K)",
            "j23": "Document: Form 8-K for Johnson Johnson filed 08/30/2023 (JOHNSON JOHNSON 2023 8K)",
        },
    )
    assert headed.period("Which business segment of JnJ is discontinued from August 30, 2023?") == 1.0, (
        "a heading's word names no year of the file name beside it: by part"
    )
    assert headed.period("What did Corning's business earn in FY2019?") == 0.0
    assert headed.period("Did Johnson & Johnson's sales rise in FY2023?") == 1.0, "its file name's year too"
    filed = BM25Index.build([], [], {"p": "Document: Form 8-K for Pepsico INC filed 05/30/2023"})
    assert filed.period("What did Pepsico borrow in May 2023?") == 1.0, "a date is the only year: it counts"
    assert filed.period("What did Pepsico earn in FY2022?") == 0.0
    papers = BM25Index.build([], [], {"bert": "Document: BERT (bert.pdf)", "glm": "Document: GLM-130B (glm.pdf)"})
    assert papers.period("What did BERT change in 2019?") == 1.0, "titles without years: nothing to tell"
    assert BM25Index.build(["a:0"], ["Boeing 2018"]).period("Boeing FY2023") == 1.0, "no titles: nothing to tell"


def test_a_capitalized_short_name_names_the_squashed_file_name_it_begins() -> None:
    """Questions shorten the names that file names squash: "MGM" for "MGMRESORTS_2023Q2_10Q"."""
    titles = {
        "mgm": "Document: 0000789570-23-000010 (MGMRESORTS_2023Q2_10Q.pdf)",
        "atvi": "Document: 0000718877-20-000012 (ACTIVISIONBLIZZARD_2019_10K.pdf)",
        "bby": "Document: 0000764478-23-000006 (BESTBUY_2023_10K.pdf)",
        "pep": "Document: 0000077476-23-000007 (PEPSICO_2022_10K.pdf)",
    }
    index = BM25Index.loads(BM25Index.build([], [], titles).dumps())
    assert index.period("What was MGM's interest coverage ratio in FY2022?") == 0.0, "its only filing is of 2023"
    assert index.period("What was the operating income for MGM in H1 FY2023?") == 1.0
    assert index.named("What was the operating income for MGM in H1 FY2023?") > index.named(
        "What was the operating income in H1 FY2023?"
    )
    assert index.period("What was Activision's capex in FY2022?") == 0.0
    assert index.named("What was Activision's revenue in FY2019?") > 0.8
    assert index.named("Which segment did Pep grow in FY2022?") > 0
    assert index.period("Which segment did best grow in FY2022?") == 1.0, "a lowercase word names nothing"
    assert index.period("Best segment of the year in FY2022?") == 0.0, "known limit: a capitalized first word counts"
    assert index.named("What PE ratio did the market give in FY2022?") == index.named("What ratio in FY2022?"), (
        "two letters are too few to name a file"
    )
    held = BM25Index.build([], [], titles | {"mgm22": "Document: MGM Resorts International (MGM 2022 10K)"})
    assert held.period("What was MGM's interest coverage ratio in FY2022?") == 1.0, "a title holds mgm: it is that"
