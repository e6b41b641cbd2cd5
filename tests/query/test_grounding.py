"""Per-sentence grounding of answers against the passages they cite (issue 18, section 2)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.embedding import Embedder
from query.answer import extractive_answer
from query.grounding import SentenceVectors, check, invented_tokens, names, split_sentences
from query.retrieval import Hit

Embed = Callable[[list[str]], np.ndarray]
PASSAGES = [
    "DistilBERT is a distilled version of BERT. It is 40% smaller and 60% faster, "
    "while keeping 97% of BERT's language understanding. It was trained on 8 V100 GPUs for 90 hours.",
    "RoBERTa was trained on 160GB of text, ten times more than BERT, with batches of 8,000 sequences.",
]


@pytest.fixture(scope="module")
def embed() -> Embed:
    return Embedder(batch_size=16).embed


def test_a_faithful_sentence_is_supported_and_an_invented_number_is_not(embed: Embed) -> None:
    answer = "DistilBERT is 40% smaller and 60% faster than BERT [1]. It was trained on 64 TPUs for 3 days [1]."
    grounding = check(answer, PASSAGES, [1], embed)
    first, second = grounding.sentences
    assert first.supported and first.cited == (1,) and first.unsupported_tokens == ()
    assert not second.supported and set(second.unsupported_tokens) >= {"64", "3"}
    assert grounding.score == 0.5 and grounding.unsupported == [second]


def test_a_paraphrase_is_supported_by_meaning(embed: Embed) -> None:
    grounding = check(
        "DistilBERT keeps most of what BERT understands while being much smaller [1].",
        PASSAGES,
        [1],
        embed,
    )
    assert grounding.score == 1.0 and grounding.sentences[0].strength >= 0.6


def test_an_unrelated_sentence_is_unsupported(embed: Embed) -> None:
    grounding = check("Penguins cannot fly but swim very well [2].", PASSAGES, [2], embed)
    assert grounding.score == 0.0 and grounding.sentences[0].strength < 0.5


def test_a_sentence_is_checked_against_its_own_citation_only(embed: Embed) -> None:
    grounding = check("RoBERTa was trained on 160GB of text [1].", PASSAGES, [1], embed)
    assert not grounding.sentences[0].supported, "passage [1] does not say it; passage [2] does"
    assert check("RoBERTa was trained on 160GB of text [2].", PASSAGES, [2], embed).score == 1.0


def test_a_sentence_without_a_marker_is_checked_against_the_answers_citations() -> None:
    grounding = check("DistilBERT is 40% smaller. It keeps 97% of it [1].", PASSAGES, [1], None)
    assert [s.cited for s in grounding.sentences] == [(1,), (1,)] and grounding.score == 1.0


def test_a_proper_name_not_in_the_passages_is_unsupported() -> None:
    assert invented_tokens("It was built at Google by Hinton.", PASSAGES[0]) == ["Google", "Hinton"]
    assert invented_tokens("DistilBERT keeps 97% of BERT.", PASSAGES[0]) == []
    assert names("The model beat GPT-4 and XLNet on GLUE.") == ["GPT-4", "XLNet", "GLUE"]
    assert names("A state-of-the-art X- model, by Hinton_2.") == ["X", "Hinton_2"]


def test_a_name_written_against_japanese_text_is_checked() -> None:
    assert names("この論文ではDistilBERTは2019年にGPT-4と比べられた") == ["DistilBERT", "GPT-4"]
    passages = "DistilBERTは2019年に発表された。"
    assert invented_tokens("DistilBERTは2019年に発表された。", passages) == []
    assert invented_tokens("この論文ではRoBERTaは2019年に発表された。", passages) == ["RoBERTa"]


def test_numbers_match_whatever_their_thousands_separator() -> None:
    assert invented_tokens("Batches held 8000 sequences.", PASSAGES[1]) == []
    assert invented_tokens("Batches held 9,000 sequences.", PASSAGES[1]) == ["9000"]


def _no_embedding(texts: list[str]) -> np.ndarray:
    raise AssertionError(f"verbatim sentences need no embedding: {texts}")


def test_an_extractive_answer_is_supported_word_for_word_without_embedding() -> None:
    hits = [Hit(f"c{i}", text, 0.5, {}) for i, text in enumerate(PASSAGES)]
    answer = extractive_answer("How much smaller and faster is DistilBERT?", hits)
    grounding = check(answer.text, PASSAGES, answer.cited, _no_embedding)
    assert grounding.sentences and grounding.score == 1.0
    assert all(s.strength == 1.0 for s in grounding.sentences)


def test_extracted_sentences_stay_verbatim_whatever_follows_them_or_the_passage_cites() -> None:
    # Measured on SciFact: extractive answers whose next sentence starts in lower case ("mTORC1",
    # "p53") were read as one sentence, and passages citing "[1]" themselves lost the word-for-word
    # match; both went through the embedding model on the hot path (about 350 ms each under load).
    passages = [
        "Cardiac remodeling can be improved by therapy. Other results follow.",
        "Unrelated text here. mTORC1 inhibition also suppressed liver fibrosis.",
        "First recognized in the turnip yellow mosaic virus [1], a pseudoknot is an RNA structure.",
    ]
    answer = (
        "Cardiac remodeling can be improved by therapy [1]. mTORC1 inhibition also suppressed liver fibrosis [2]. "
        "First recognized in the turnip yellow mosaic virus [3], a pseudoknot is an RNA structure [3]."
    )
    grounding = check(answer, passages, [1, 2, 3], _no_embedding)
    assert [s.cited for s in grounding.sentences] == [(1,), (2,), (3,)]
    assert grounding.score == 1.0


def test_sentence_vectors_embed_each_text_once(embed: Embed) -> None:
    vectors = SentenceVectors(embed, size=3)
    first = vectors(["alpha beta", "gamma delta", "alpha beta"])
    assert vectors.embedded == 2 and first.shape[0] == 3
    assert np.allclose(first[0], first[2]) and np.allclose(first[0], embed(["alpha beta"])[0], atol=1e-5)
    again = vectors(["gamma delta", "epsilon"])
    assert vectors.embedded == 3 and np.allclose(again[0], first[1])
    vectors(["one", "two", "three"])  # the cache keeps 3: the oldest texts go
    vectors(["alpha beta"])
    assert vectors.embedded == 7


def test_japanese_sentences_are_split_and_checked_by_bigrams() -> None:
    passages = ["東京タワーは1958年に完成した。高さは333メートルである。"]
    grounding = check("東京タワーは1958年に完成した[1]。高さは400メートルである[1]。", passages, [1], None)
    assert [s.supported for s in grounding.sentences] == [True, False]
    assert grounding.sentences[1].unsupported_tokens == ("400",)


def test_nothing_to_check_has_no_score() -> None:
    assert check("", PASSAGES, [], None).score is None
    assert check("Something [1].", [], [], None).score is None
    assert split_sentences("One thing [1]. [2]") == ["One thing [1] [2]."]
