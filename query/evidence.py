"""How strongly the retrieved passages support answering a question, and whether to decline it.

Published experience (and issue 18's own data) says a single similarity threshold separates
answerable from unanswerable questions badly: a question about a flag that does not exist still
finds passages about neighbouring flags at cosine 0.4-0.7. So the decision combines signals that
need nothing but the retrieval itself:

- ``top_score``: the dense cosine of the best-ranked passage (retrieval's own evidence);
- ``gap``: how far the best cosine is ahead of the runner-up (a clear winner, or a flat list);
- ``coverage``: the share of the question's terms, weighted by how rare they are in the
  version (BM25's document frequencies, so CJK character bigrams count like words), that the
  best single passage among the top three contains: the rare words of a question ("GLM-130B",
  "--dry-run") are what an unanswerable question lacks;
- ``agreement``: the same weighted share, counting only terms that at least two of the top
  three passages contain (several passages agreeing, rather than one accidental match);
- ``held``: the same weighted share, counting a term when the top three passages hold it as
  often as the version allows (two of them, or the one chunk that has it): in a collection of
  three short files no second passage can agree;
- ``phrase``: the weighted share of question terms that one passage holds next to their
  neighbour in the question ("comes home under the sun"), not merely somewhere in a long chunk;
- ``named``: how fully the question names one of the version's documents by its title
  (``BM25Index.named``: "Boeing's FY2022 revenue" and "BOEING_2022_10K"; "How does BERT mask
  tokens?" and "bert.pdf"). A question about a company or a paper the collection has no document
  of names none, however close its passages read; 0 for versions without titles (built with
  ``ingestion.context: off``, or before 2026-12-01);
- ``period``: whether the documents the question names carry the latest year it asks about
  (``BM25Index.period``: "Boeing's FY2023 outlook" where the only Boeing filing is
  "BOEING_2018_10K" is 0); 1 when there is nothing to tell (no year asked, no dated title);
- ``known``: whether every name the question capitalizes ("Verizon", "Ulta Beauty", "Chinchilla";
  a capitalized word that does not start a sentence and is not all capitals, as acronyms a question
  defines ("DSO") often are not) occurs somewhere in the version: 0 when one occurs in no chunk
  (``question_names``). A question about a company or a model the collection never mentions
  still finds passages about its neighbours; its own name is what they lack;
- ``small``: how small the version is (``size_weight`` of its chunk count).

``confidence`` combines them with a logistic model whose coefficients are fitted offline, one per
script of the question (see ``MODELS``). The signals mean different things in a version of three chunks and of a
thousand (the best cosine of a short question against a short noisy file is low; a phrase match
among a thousand chunks is often chance), so every signal also enters multiplied by ``small``:
two linear models, blended by the version's size. An LLM answer adds one more signal: the
sentinel it is told to answer with when the context lacks the answer (``is_sentinel``), which
declines the question whatever the retrieval said.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.bm25 import BM25Index, idf, tokenize

# The LLM is told to answer exactly this when the passages do not contain the answer.
SENTINEL = "NOT_IN_CONTEXT"
SENTINEL_INSTRUCTION = (
    f"If the context passages do not contain the answer, reply with exactly {SENTINEL} and nothing else."
)
_SENTINEL_RE = re.compile(rf"\b{SENTINEL}\b", re.IGNORECASE)

AGREEMENT_PASSAGES = 3  # the best passages whose coverage and agreement count
# Words that shape a question rather than name its subject: documents rarely contain them, so
# as rare terms they would count as missing evidence in every question that uses them.
QUESTION_WORDS = frozenset(
    tokenize(
        "much many describe explain mention mentioned discuss discussed give list tell according "
        "main purpose role significance significant way ways used use using does do did paper "
        "document study authors author provide provided example examples specific specifically key",
        drop_stopwords=False,
    )
)

SMALL_CHUNKS = 10  # size_weight is 0.5 at this many chunks (by hand; 30, 50, 100 moved TEST by <= 0.04)
# Bump when MODELS change: an evaluation's calibration records the model it calibrated.
MODEL_VERSION = "2026-12-03a"
# One logistic model per script of the question (``script``), each over the signals and each signal times
# ``small``, fitted with `python -m bench.abstention --fit bench/results/2026-12-03.abstention-names.json
# --corpora aragog+solana,small,financebench --cjk-corpora jsquad,small` (bench.abstention.fit_models: Newton's
# method, L2 0.1 on standardised terms, un-standardised here) on TRAIN halves only (sha256 of the question id,
# first byte even); the TEST halves fitted nothing. The procedure, ``period``'s reading of a title's year and
# the capitalized short names of ``core.bm25._TitleTerms.asked`` were chosen by `--cross`, fitted each way, against
# rules written before (README).
# - "latin": the Latin-script TRAIN rows of ARAGOG + Solana (150 rows, collections of 834-1,051 chunks), of the
#   small-collection set (102 rows, 1-16 chunks; bench/abstention.py small_groups) and of financebench-subset (104
#   rows, two halves of 20 filings; ``period`` is 1 wherever titles carry no year, so only dated collections teach
#   its weight). ``period*small`` only shares ``small``'s weight: no small collection has a dated title.
# - "cjk": the Japanese TRAIN rows of JSQuAD (284 rows) and of the small collections' JSQuAD groups (100 rows),
#   without ``top_score`` and ``gap``: all-MiniLM-L6-v2 does not read Japanese (top_score AUC 0.69 on JSQuAD's
#   TEST half, 0.94 on ARAGOG + Solana), so the Latin model, which leans on the cosine, answered fewer than half
#   of JSQuAD's answerable questions. Chinese and Korean questions have no rows of their own and use it too: the
#   signals it weighs read CJK text as character bigrams whatever the language.
# Each model's threshold is chosen by the rule below on its own rows (latin 0.44, cjk 0.71); the cjk intercept is
# moved by logit(0.44) - logit(0.71) so that its threshold falls on the default: one threshold, and one
# calibration per version, mean the same in both scripts.
_LATIN: dict[str, float] = {
    "intercept": -15.203,
    "top_score": 8.874,
    "gap": 2.574,
    "coverage": 0.711,
    "agreement": -0.636,
    "held": 3.178,
    "phrase": 1.761,
    "named": 3.839,
    "period": 3.884,
    "known": 3.73,
    "small": 5.604,
    "top_score*small": -2.255,
    "gap*small": -4.661,
    "coverage*small": 9.39,
    "agreement*small": -31.608,
    "held*small": -0.84,
    "phrase*small": 27.944,
    "named*small": -10.333,
    "period*small": 5.585,
    "known*small": -6.399,
}
_CJK: dict[str, float] = {
    "intercept": -13.954,
    "coverage": 15.548,
    "agreement": -5.611,
    "held": 10.002,
    "phrase": 4.705,
    "named": 6.753,
    "period": 2.2,
    "known": 0.709,
    "small": 2.217,
    "coverage*small": 4.88,
    "agreement*small": -28.337,
    "held*small": 5.853,
    "phrase*small": -5.394,
    "named*small": -7.406,
    "period*small": 2.282,
    "known*small": 2.216,
}
# The confidence below which ``abstain: auto`` declines when the version has no calibrated
# threshold: on the Latin model's TRAIN rows, the largest threshold (0.01 steps) that still answers at
# least 92% of the answerable questions (2 points of margin over the 90% floor).
DEFAULT_ABSTAIN_THRESHOLD = 0.44
# A script without its own model is scored by "latin".
MODELS: dict[str, dict[str, float]] = {"latin": _LATIN, "cjk": _CJK}


@dataclass(frozen=True)
class Evidence:
    """The retrieval signals of one question and the confidence they add up to (0-1)."""

    top_score: float
    gap: float
    coverage: float
    agreement: float
    held: float
    phrase: float
    named: float
    period: float
    known: float
    small: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def _frequencies(question: str, index: BM25Index | None, passages: Sequence[str]) -> tuple[dict[str, int], int]:
    """The question's terms and how many chunks of the version (or, without a BM25 index, of ``passages``) hold each."""
    terms = [t for t in dict.fromkeys(tokenize(question)) if t not in QUESTION_WORDS]
    if not terms:
        return {}, 0
    if index is not None and index.ids:
        return index.document_frequencies(terms)
    held = [set(tokenize(text)) for text in passages]
    return {t: sum(t in p for p in held) for t in terms}, max(len(held), 1)


def term_weights(question: str, index: BM25Index | None, passages: Sequence[str]) -> dict[str, float]:
    """The question's terms weighted by rarity in the version (or, without a BM25 index, among ``passages``)."""
    counts, documents = _frequencies(question, index, passages)
    return {term: idf(count, documents) for term, count in counts.items()}


def coverage_signals(weights: dict[str, float], passages: Sequence[str]) -> tuple[float, float]:
    """(coverage, agreement) of the weighted question terms by the first ``AGREEMENT_PASSAGES`` passages."""
    total = sum(weights.values())
    if total <= 0 or not passages:
        return 0.0, 0.0
    held = [set(tokenize(text)) for text in passages[:AGREEMENT_PASSAGES]]
    coverage = max(sum(w for t, w in weights.items() if t in p) for p in held) / total
    agreed = sum(w for t, w in weights.items() if sum(t in p for p in held) >= 2) / total
    return coverage, agreed


def held_signal(weights: dict[str, float], counts: dict[str, int], passages: Sequence[str]) -> float:
    """The weighted share of question terms the best passages hold as often as the version allows.

    ``agreement`` needs two of the top passages to hold a term, which a term only one chunk of
    the version has can never reach: in a collection of three short documents every matched
    term is such a term. Here a term counts when at least ``min(2, chunks holding it)`` of the
    first ``AGREEMENT_PASSAGES`` passages hold it (and at least one does).
    """
    total = sum(weights.values())
    if total <= 0 or not passages:
        return 0.0
    held = [set(tokenize(text)) for text in passages[:AGREEMENT_PASSAGES]]
    return sum(w for t, w in weights.items() if sum(t in p for p in held) >= max(1, min(2, counts.get(t, 0)))) / total


def phrase_signal(question: str, weights: dict[str, float], passages: Sequence[str]) -> float:
    """The weighted share of question terms found in one passage next to a neighbouring question term.

    The question's content terms (stop words dropped, stemmed, CJK as character bigrams) are
    read in order; a term counts when it and its neighbour in the question are also neighbours
    in the passage (a shared phrase such as "comes home under the sun", or three CJK characters
    in a row). The best of the first ``AGREEMENT_PASSAGES`` passages counts. Words that merely
    occur somewhere in a long chunk do not count: that is ``coverage``.
    """
    total = sum(weights.values())
    sequence = tokenize(question)
    if total <= 0 or len(sequence) < 2 or not passages:
        return 0.0
    best = 0.0
    for text in passages[:AGREEMENT_PASSAGES]:
        tokens = tokenize(text)
        pairs = set(itertools.pairwise(tokens))
        matched: set[str] = set()
        for left, right in itertools.pairwise(sequence):
            if (left, right) in pairs:
                matched.update((left, right))
        best = max(best, sum(w for t, w in weights.items() if t in matched) / total)
    return best


# A word: letters only ("GPT-3" -> "GPT"). ``tokenize`` keeps letters and digits together ("Arp2/3" -> arp2), so
# "Arp" of "Arp2/3" reads as unknown; reading words as ``tokenize`` does was tried (README: with period notation,
# 2026-12-02) and lowered financebench's separation, so it is not adopted.
_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE_END = (".", "?", "!", ":", ";")


def question_names(question: str) -> list[str]:
    """The names a question capitalizes, as ``tokenize`` terms ("Did Verizon's debt rise?" -> ["verizon"]).

    A name is a word that starts with a capital, is not all capitals (an acronym the question may
    define itself: "CCC = DIO + DSO - DPO") and does not start a sentence. Scripts without case
    (CJK) have none.
    """
    names: list[str] = []
    for position, match in enumerate(_WORD.finditer(question)):
        word = match.group()
        preceding = question[: match.start()]
        before = preceding.rstrip()
        if position == 0 or not before or before.endswith(_SENTENCE_END) or "\n" in preceding[len(before) :]:
            continue  # a sentence's (or a line's) first word is capitalized whatever it is
        if word[0].isupper() and not word.isupper():
            names.extend(tokenize(word))
    return list(dict.fromkeys(names))


def known_signal(question: str, index: BM25Index | None, passages: Sequence[str]) -> float:
    """1 when every name of ``question`` occurs in some chunk of the version (or, without a BM25 index,
    of ``passages``), or it names none; 0 when one occurs nowhere."""
    names = question_names(question)
    if not names:
        return 1.0
    if index is not None and index.ids:
        counts = index.document_frequencies(names)[0]
        return 0.0 if any(counts[name] == 0 for name in names) else 1.0
    held = {term for text in passages for term in tokenize(text)}
    return 0.0 if any(name not in held for name in names) else 1.0


def size_weight(chunks: int) -> float:
    """How small the version is, 0-1: 1 for one chunk, 0.5 at ``SMALL_CHUNKS`` chunks, about 0.01 at a thousand."""
    return 1.0 / (1.0 + max(chunks, 1) / SMALL_CHUNKS)


def model_signals(models: Mapping[str, Mapping[str, float]] | None = None) -> tuple[str, ...]:
    """The signals the confidence ``models`` (default ``MODELS``) weigh, alone or in products ``a*b``."""
    keys = (key for model in (MODELS if models is None else models).values() for key in model if key != "intercept")
    return tuple(dict.fromkeys(part for key in keys for part in key.split("*")))


def feature(signals: Mapping[str, float], key: str) -> float:
    """One term of the model: a signal, or the product of the signals ``key`` names (``"phrase*small"``)."""
    return math.prod(float(signals[name]) for name in key.split("*"))


def script(question: str) -> str:
    """Which model scores ``question``: "cjk" for one in Japanese, Chinese or Korean (``language``), else "latin"."""
    return "latin" if language(question) == "en" else "cjk"


def score(model: Mapping[str, float], signals: Mapping[str, float]) -> float:
    """A logistic ``model``'s output (0-1) for ``signals`` by name."""
    z = model["intercept"] + sum(c * feature(signals, k) for k, c in model.items() if k != "intercept")
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def confidence(signals: Mapping[str, float], script: str = "latin") -> float:
    """The confidence (0-1) that the passages answer the question, from its ``signals`` by name, by the model of
    the question's ``script``."""
    return score(MODELS.get(script, MODELS["latin"]), signals)


def evidence(
    question: str,
    scores: Sequence[float],
    passages: Sequence[str],
    index: BM25Index | None,
    chunks: int | None = None,
) -> Evidence:
    """The signals of ``passages`` (best first, with their cosine ``scores``) for ``question``.

    ``chunks``: the version's chunk count (else the BM25 index's, else the passages').
    """
    if not passages:
        return Evidence(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0)
    ranked = sorted(scores, reverse=True)
    top = float(scores[0])
    gap = float(ranked[0] - ranked[1]) if len(ranked) > 1 else float(ranked[0])
    counts, documents = _frequencies(question, index, passages)
    weights = {term: idf(count, documents) for term, count in counts.items()}
    coverage, agreement = coverage_signals(weights, passages)
    held = held_signal(weights, counts, passages)
    phrase = phrase_signal(question, weights, passages)
    signals = {
        "top_score": top,
        "gap": gap,
        "coverage": coverage,
        "agreement": agreement,
        "held": held,
        "phrase": phrase,
        "named": index.named(question) if index is not None else 0.0,
        "period": index.period(question) if index is not None else 1.0,
        "known": known_signal(question, index, passages),
        "small": size_weight(chunks or (len(index.ids) if index is not None and index.ids else len(passages))),
    }
    return Evidence(**signals, confidence=confidence(signals, script(question)))


def abstain_threshold(config_value: str | float, calibrated: float | None) -> float | None:
    """The confidence below which a question is declined; None: never decline on confidence.

    ``config_value`` is the collection's ``answer.abstain``: ``"never"``, a threshold in [0, 1],
    or ``"auto"``: the version's ``calibrated`` threshold (from its golden set) when there is
    one, else ``DEFAULT_ABSTAIN_THRESHOLD``. This is the one place the rule lives.
    """
    if config_value == "never":
        return None
    if config_value == "auto":
        return calibrated if calibrated is not None else DEFAULT_ABSTAIN_THRESHOLD
    return float(config_value)


def declines(evidence: Evidence, threshold: float | None) -> bool:
    return threshold is not None and evidence.confidence < threshold


def is_sentinel(text: str) -> bool:
    """Whether an LLM answer says the context lacks the answer (the sentinel, alone or nearly)."""
    stripped = text.strip().strip("`*\"'.")
    return bool(_SENTINEL_RE.search(stripped)) and len(stripped) <= len(SENTINEL) + 40


def could_become_sentinel(text: str) -> bool:
    """Whether streamed ``text`` so far may still turn out to be the sentinel (hold it back until it cannot)."""
    stripped = text.strip().lstrip("`*\"'").upper()
    if len(stripped) <= len(SENTINEL):
        return SENTINEL.startswith(stripped)
    return stripped.startswith(SENTINEL) and len(stripped) <= len(SENTINEL) + 40


_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u3400-\u9fff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
DECLINED = {
    "en": "The knowledge base does not cover this question. The closest passages are listed as citations.",
    "ja": "ナレッジベースにはこの質問に答える情報がありません。最も近い箇所を引用として示します。",
    "zh": "知识库中没有涵盖此问题的内容。最接近的段落已列为引用。",
    "ko": "지식 베이스에는 이 질문에 답하는 내용이 없습니다. 가장 가까운 구절을 인용으로 제시합니다.",
}


def language(question: str) -> str:
    """The question's language by script: kana → ja, hangul → ko, other Han → zh, else en."""
    if _KANA.search(question):
        return "ja"
    if _HANGUL.search(question):
        return "ko"
    if _HAN.search(question):
        return "zh"
    return "en"


def declined_text(question: str) -> str:
    """The fixed statement a declined question gets, in its language."""
    return DECLINED[language(question)]
