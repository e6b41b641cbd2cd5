"""Evidence signals, the confidence model, the abstention threshold and the LLM sentinel (issue 18)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.bm25 import BM25Index
from core.config import DEFAULT_PROMPT_TEMPLATE, CollectionConfig
from query import evidence
from query.evidence import Evidence, abstain_threshold, declined_text, declines, is_sentinel, language

PASSAGES = [
    "DistilBERT is a distilled version of BERT: 40% smaller and 60% faster, keeping 97% of its performance.",
    "Knowledge distillation trains a small student model to reproduce the outputs of a larger teacher model.",
    "BERT is pre-trained with masked language modelling and next sentence prediction on BooksCorpus.",
]
CORPUS = [
    *PASSAGES,
    "RoBERTa removes next sentence prediction and trains longer with larger batches.",
    "HellaSwag is a commonsense inference benchmark built with adversarial filtering.",
]


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build([f"c{i}" for i in range(len(CORPUS))], CORPUS)


def test_rare_terms_weigh_more_than_common_ones(index: BM25Index) -> None:
    weights = evidence.term_weights("How does DistilBERT compare to BERT?", index, PASSAGES)
    assert weights["distilbert"] > weights["bert"] > 0


def test_a_term_no_chunk_holds_weighs_the_most(index: BM25Index) -> None:
    weights = evidence.term_weights("What does the --frobnicate flag of BERT do?", index, PASSAGES)
    assert weights["frobnic"] == max(weights.values())


def test_coverage_is_high_when_the_best_passage_holds_the_rare_terms(index: BM25Index) -> None:
    covered = evidence.evidence("How much smaller is DistilBERT than BERT?", [0.7, 0.5, 0.4], PASSAGES, index)
    missing = evidence.evidence("How much smaller is GLM-130B than BERT?", [0.7, 0.5, 0.4], PASSAGES, index)
    assert covered.coverage > 0.9 and missing.coverage < 0.6
    assert covered.confidence > missing.confidence


def test_agreement_counts_terms_held_by_several_passages(index: BM25Index) -> None:
    agreed = evidence.evidence("BERT next sentence prediction", [0.6, 0.6, 0.6], PASSAGES, index)
    single = evidence.evidence("adversarial filtering", [0.6, 0.6, 0.6], PASSAGES, index)
    assert agreed.agreement > 0 and single.agreement == 0


def test_cjk_questions_are_covered_by_character_bigrams() -> None:
    passages = ["東京タワーは1958年に完成した電波塔である。", "富士山は日本で最も高い山である。"]
    index = BM25Index.build(["a", "b"], passages)
    found = evidence.evidence("東京タワーはいつ完成しましたか", [0.3, 0.2], passages, index)
    absent = evidence.evidence("大阪城はいつ建てられましたか", [0.3, 0.2], passages, index)
    assert found.coverage > absent.coverage


def test_gap_is_the_lead_of_the_best_score() -> None:
    signals = evidence.evidence("BERT", [0.5, 0.8, 0.3], PASSAGES, None)
    assert signals.top_score == 0.5 and signals.gap == pytest.approx(0.3)


def test_no_passages_mean_no_confidence() -> None:
    assert evidence.evidence("anything", [], [], None).confidence == 0.0


BASE = {
    "top_score": 0.5,
    "gap": 0.05,
    "coverage": 0.5,
    "agreement": 0.2,
    "held": 0.3,
    "phrase": 0.2,
    "named": 0.0,
    "period": 1.0,
    "known": 1.0,
    "small": 0.01,
}


def test_confidence_grows_with_the_evidence() -> None:
    base = evidence.confidence(BASE)
    assert 0 < base < 1
    assert evidence.confidence(BASE | {"top_score": 0.7}) > base
    stronger = BASE | {"coverage": 0.9, "agreement": 0.6, "held": 0.9, "phrase": 0.8}
    assert evidence.confidence(stronger) > base
    assert evidence.confidence(BASE | {"named": 0.8}) > base, "a question that names a document of the version"
    assert evidence.confidence(BASE | {"period": 0.0}) < base, "the documents it names are of other years"


def test_named_comes_from_the_versions_titles() -> None:
    titles = {
        "bert": "Document: BERT: Pre-training of Deep Bidirectional Transformers (bert)",
        "hs": "Document: hellaswag",
    }
    index = BM25Index.build(["bert:0", "hs:0"], PASSAGES[2:] + CORPUS[4:], titles)
    named = evidence.evidence("How is BERT pre-trained?", [0.6, 0.3], [PASSAGES[2], CORPUS[4]], index)
    unnamed = evidence.evidence("How is GLM-130B pre-trained?", [0.6, 0.3], [PASSAGES[2], CORPUS[4]], index)
    assert named.named > 0.3 and unnamed.named < named.named
    assert evidence.evidence("How is BERT pre-trained?", [0.6], [PASSAGES[2]], None).named == 0.0


def test_period_comes_from_the_versions_titles() -> None:
    titles = {"b18": "Document: 0000012927-19-000010 (BOEING_2018_10K.pdf)", "hs": "Document: hellaswag"}
    index = BM25Index.build(["b18:0", "hs:0"], PASSAGES[2:] + CORPUS[4:], titles)
    asked = [0.6, 0.3], [PASSAGES[2], CORPUS[4]], index
    assert evidence.evidence("What will Boeing deliver in FY2023?", *asked).period == 0.0
    assert evidence.evidence("What did Boeing deliver in FY2018?", *asked).period == 1.0
    assert evidence.evidence("What will Boeing deliver in FY2023?", [0.6], [PASSAGES[2]], None).period == 1.0


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("Did Verizon's debt rise in FY2022?", ["verizon"]),
        ("How does DistilBERT compare to BERT?", ["distilbert"]),  # BERT: all capitals, an acronym
        ("What is the cash conversion cycle (CCC) for General Mills? CCC = DIO + DSO - DPO", ["gener", "mill"]),
        ('What is "Chinchilla" about? Also, Mistral.', ["chinchilla", "mistral"]),  # "Also" starts a sentence
        # first words: of the question, of a sentence, of a line
        ("Verizon: how much debt? The debt; Its rating\nWhat rating?", []),
        ("東京タワーはいつ完成しましたか", []),  # no case, no names
    ],
)
def test_question_names_are_capitalized_words_inside_a_sentence(question: str, names: list[str]) -> None:
    assert evidence.question_names(question) == names


def test_known_is_zero_when_a_name_the_question_asks_about_is_nowhere_in_the_version(index: BM25Index) -> None:
    asked = [0.6, 0.5, 0.4], PASSAGES, index
    assert evidence.evidence("How much smaller is DistilBERT than BERT?", *asked).known == 1.0
    # HellaSwag is in the version (a chunk that was not retrieved): known
    assert evidence.evidence("Does DistilBERT do well on HellaSwag?", *asked).known == 1.0
    assert evidence.evidence("How much smaller is Chinchilla than BERT?", *asked).known == 0.0
    assert evidence.evidence("How much smaller is it than BERT?", *asked).known == 1.0, "no name: nothing to tell"
    # without a BM25 index, the passages stand for the version
    assert evidence.evidence("Does DistilBERT do well on HellaSwag?", [0.6, 0.5, 0.4], PASSAGES, None).known == 0.0


def test_the_model_weighs_signals_the_service_computes() -> None:
    signals = evidence.evidence("How much smaller is DistilBERT than BERT?", [0.7, 0.5, 0.4], PASSAGES, None)
    assert set(evidence.model_signals()) <= set(signals.as_dict())
    assert signals.confidence == pytest.approx(evidence.confidence(signals.as_dict()), abs=1e-3)


def test_held_counts_a_term_only_one_chunk_has_when_the_best_passage_holds_it(index: BM25Index) -> None:
    # "adversarial filtering": one chunk of the version holds it; agreement (two of the top three) can never count it.
    passages = [CORPUS[4], CORPUS[0], CORPUS[1]]
    single = evidence.evidence("adversarial filtering", [0.6, 0.3, 0.2], passages, index)
    assert single.agreement == 0 and single.held == 1.0
    missed = evidence.evidence("adversarial filtering", [0.6, 0.3, 0.2], PASSAGES, index)  # not retrieved
    assert missed.held == 0.0


def test_phrase_counts_question_terms_next_to_each_other_in_one_passage(index: BM25Index) -> None:
    together = evidence.evidence("Who used next sentence prediction?", [0.5, 0.4, 0.3], PASSAGES, index)
    apart = evidence.evidence("Which sentence is next to the prediction?", [0.5, 0.4, 0.3], PASSAGES, index)
    assert together.phrase == 1.0 and together.coverage == 1.0
    assert apart.phrase < 0.5 and apart.coverage == 1.0


TINY = [  # tests/integration/test_cli.py's fixture files, as their chunks read
    "My First Heading\nMy Second Heading\nMy first paragraph. lorem ipsum dolor set amet. if the cow comes home "
    "under the sun how do you fault the cow for it's worn hooves?\nA test list\nWith sub-bullets!\nAnd another",
    "This is a test document to use for unit tests.\n\nDoylestown, PA 18901\n\nImportant points:\n"
    "Hamburgers are delicious\nDogs are the best\nI love fuzzy blankets",
    "This is a simple document. It has a heading and some text.",
]


def test_a_short_question_answered_word_for_word_in_a_tiny_collection_is_answered() -> None:
    """Issue 18's day-one weakness: 3 short documents, the phrase in one; it got confidence 0.01-0.03."""
    from core.embedding import Embedder

    embedder = Embedder()
    index = BM25Index.build(["html", "text", "docx"], TINY)
    question = "Who comes home under the sun?"
    vector, _ = embedder.embed_query(question)
    scores = embedder.embed(TINY) @ vector
    order = sorted(range(3), key=lambda i: -scores[i])
    found = evidence.evidence(question, [float(scores[i]) for i in order], [TINY[i] for i in order], index)
    assert found.top_score < 0.4, "the cosine alone is low: short question, noisy chunk"
    assert found.phrase == 1.0 and found.held == 1.0
    assert found.confidence >= evidence.DEFAULT_ABSTAIN_THRESHOLD, found
    absent = "Who goes to the market at night?"
    vector, _ = embedder.embed_query(absent)
    scores = embedder.embed(TINY) @ vector
    order = sorted(range(3), key=lambda i: -scores[i])
    missing = evidence.evidence(absent, [float(scores[i]) for i in order], [TINY[i] for i in order], index)
    assert missing.confidence < evidence.DEFAULT_ABSTAIN_THRESHOLD, missing


TINY_JA = [
    "東京タワーは1958年に完成した電波塔で、高さは333メートルである。東京都港区芝公園にある。",
    "富士山は日本で最も高い山で、標高は3776メートルである。静岡県と山梨県にまたがる。",
    "琵琶湖は滋賀県にある日本最大の湖である。面積は約670平方キロメートルである。",
]


@pytest.mark.parametrize(
    ("question", "answerable"),
    [
        ("東京タワーが完成したのは何年ですか", True),
        ("富士山の標高は何メートルですか", True),
        ("大阪城を建てたのは誰ですか", False),
        ("東京スカイツリーの高さは何メートルですか", False),
        ("日本で一番長い川は何ですか", False),
    ],
)
def test_a_japanese_question_is_scored_by_the_cjk_model(question: str, answerable: bool) -> None:
    """The English embedding finds any two Japanese texts alike (cosine 0.58-0.81 here), so the Latin model,
    which leans on the cosine, answered all three questions the collection cannot; the CJK model weighs
    the terms the passages hold instead."""
    from core.embedding import Embedder

    embedder = Embedder()
    index = BM25Index.build(["tower", "fuji", "biwa"], TINY_JA)
    vector, _ = embedder.embed_query(question)
    scores = embedder.embed(TINY_JA) @ vector
    order = sorted(range(3), key=lambda i: -scores[i])
    found = evidence.evidence(question, [float(scores[i]) for i in order], [TINY_JA[i] for i in order], index)
    assert evidence.script(question) == "cjk"
    signals = found.as_dict()
    assert found.confidence == pytest.approx(evidence.confidence(signals, "cjk"), abs=1e-3)
    assert (found.confidence >= evidence.DEFAULT_ABSTAIN_THRESHOLD) is answerable, signals
    assert evidence.confidence(signals, "latin") >= evidence.DEFAULT_ABSTAIN_THRESHOLD, "why it has its own model"


def test_the_script_follows_the_language_and_an_unknown_one_is_scored_as_latin() -> None:
    assert [evidence.script(q) for q in ("What is BERT?", "BERTとは", "什么是BERT", "BERT가 무엇")] == [
        "latin",
        "cjk",
        "cjk",
        "cjk",
    ]
    signals = {name: 0.5 for name in evidence.model_signals()}
    assert evidence.confidence(signals, "cyrillic") == evidence.confidence(signals, "latin")
    assert evidence.confidence(signals, "cjk") != evidence.confidence(signals, "latin")


def test_threshold_auto_uses_the_calibrated_one_when_there_is_one() -> None:
    assert abstain_threshold("auto", 0.31) == 0.31
    assert abstain_threshold("auto", None) == evidence.DEFAULT_ABSTAIN_THRESHOLD
    assert abstain_threshold("never", 0.31) is None
    assert abstain_threshold(0.7, 0.31) == 0.7
    assert abstain_threshold(0.0, None) == 0.0


def test_declines_below_the_threshold_only() -> None:
    signals = Evidence(0.5, 0.1, 0.5, 0.1, 0.2, 0.1, 0.0, 1.0, 1.0, 0.01, confidence=0.4)
    assert declines(signals, 0.5) and not declines(signals, 0.4) and not declines(signals, None)


@pytest.mark.parametrize("value", ["sometimes", -0.1, 1.5, float("nan"), True and "yes"])
def test_config_refuses_a_bad_abstain_value(value: object) -> None:
    with pytest.raises(ValidationError):
        CollectionConfig.model_validate({"answer": {"abstain": value}})


def test_config_accepts_auto_never_and_thresholds() -> None:
    assert CollectionConfig().answer.abstain == "auto"
    assert CollectionConfig.model_validate({"answer": {"abstain": "never"}}).answer.abstain == "never"
    assert CollectionConfig.model_validate({"answer": {"abstain": 0.4}}).answer.abstain == 0.4


def test_the_default_prompt_asks_for_the_sentinel() -> None:
    assert evidence.SENTINEL in DEFAULT_PROMPT_TEMPLATE


@pytest.mark.parametrize("text", ["NOT_IN_CONTEXT", " not_in_context. ", "`NOT_IN_CONTEXT`", "NOT_IN_CONTEXT [1]"])
def test_the_sentinel_is_recognised(text: str) -> None:
    assert is_sentinel(text)


@pytest.mark.parametrize("text", ["", "DistilBERT is 40% smaller [1].", "NOT_IN_CONTEXT " + "but here is a guess " * 5])
def test_an_answer_is_not_the_sentinel(text: str) -> None:
    assert not is_sentinel(text)


def test_streamed_text_is_held_back_only_while_it_may_be_the_sentinel() -> None:
    assert evidence.could_become_sentinel("") and evidence.could_become_sentinel("NOT_")
    assert evidence.could_become_sentinel("NOT_IN_CONTEXT")
    assert not evidence.could_become_sentinel("Not") or evidence.could_become_sentinel("NOT")  # case-insensitive
    assert not evidence.could_become_sentinel("DistilBERT")


@pytest.mark.parametrize(
    ("question", "code"),
    [("What is BERT?", "en"), ("BERTとは何ですか", "ja"), ("什么是BERT", "zh"), ("BERT가 무엇입니까", "ko")],
)
def test_the_declined_statement_is_in_the_questions_language(question: str, code: str) -> None:
    assert language(question) == code
    assert declined_text(question) == evidence.DECLINED[code]
