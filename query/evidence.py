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
  three passages contain (several passages agreeing, rather than one accidental match).

``confidence`` combines them with a logistic model whose coefficients are fitted offline (see
``COEFFICIENTS``). An LLM answer adds one more signal: the sentinel it is told to answer with
when the context lacks the answer (``is_sentinel``), which declines the question whatever the
retrieval said.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.bm25 import BM25Index, tokenize

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

# Logistic model over (top_score, gap, coverage, agreement), fitted with `python -m bench.abstention
# --fit` (Newton's method, L2 0.1 on standardised signals, un-standardised here) on the TRAIN half
# (sha256 of the question id, first byte even) of ARAGOG + Solana: 75 questions, each asked once of
# the half of the corpus that holds its document and once of the half that does not (150 rows,
# bench/results/2026-12-01.abstention-fit.json). The TEST half fitted nothing; the README reports it.
# top_score carries most of it; coverage and agreement add what a lexically close corpus blurs.
COEFFICIENTS = {"intercept": -12.102, "top_score": 16.885, "gap": 1.525, "coverage": 2.974, "agreement": 4.388}
# The confidence below which ``abstain: auto`` declines when the version has no calibrated
# threshold: on the same TRAIN rows, the largest threshold (0.01 steps) that still answers at
# least 92% of the answerable questions (2 points of margin over the 90% floor).
DEFAULT_ABSTAIN_THRESHOLD = 0.46


@dataclass(frozen=True)
class Evidence:
    """The retrieval signals of one question and the confidence they add up to (0-1)."""

    top_score: float
    gap: float
    coverage: float
    agreement: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def idf(df: int, documents: int) -> float:
    """Lucene's BM25 inverse document frequency; a term no chunk holds weighs the most."""
    return math.log(1 + (documents - df + 0.5) / (df + 0.5))


def term_weights(question: str, index: BM25Index | None, passages: Sequence[str]) -> dict[str, float]:
    """The question's terms weighted by rarity in the version (or, without a BM25 index, among ``passages``)."""
    terms = [t for t in dict.fromkeys(tokenize(question)) if t not in QUESTION_WORDS]
    if not terms:
        return {}
    if index is not None and index.ids:
        counts, documents = index.document_frequencies(terms)
    else:
        held = [set(tokenize(text)) for text in passages]
        counts, documents = {t: sum(t in p for p in held) for t in terms}, max(len(held), 1)
    return {term: idf(counts[term], documents) for term in terms}


def coverage_signals(weights: dict[str, float], passages: Sequence[str]) -> tuple[float, float]:
    """(coverage, agreement) of the weighted question terms by the first ``AGREEMENT_PASSAGES`` passages."""
    total = sum(weights.values())
    if total <= 0 or not passages:
        return 0.0, 0.0
    held = [set(tokenize(text)) for text in passages[:AGREEMENT_PASSAGES]]
    coverage = max(sum(w for t, w in weights.items() if t in p) for p in held) / total
    agreed = sum(w for t, w in weights.items() if sum(t in p for p in held) >= 2) / total
    return coverage, agreed


def confidence(top_score: float, gap: float, coverage: float, agreement: float) -> float:
    """The logistic model's probability that the passages answer the question."""
    c = COEFFICIENTS
    z = (
        c["intercept"]
        + c["top_score"] * top_score
        + c["gap"] * gap
        + c["coverage"] * coverage
        + c["agreement"] * agreement
    )
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def evidence(question: str, scores: Sequence[float], passages: Sequence[str], index: BM25Index | None) -> Evidence:
    """The signals of ``passages`` (best first, with their cosine ``scores``) for ``question``."""
    if not passages:
        return Evidence(0.0, 0.0, 0.0, 0.0, 0.0)
    ranked = sorted(scores, reverse=True)
    top = float(scores[0])
    gap = float(ranked[0] - ranked[1]) if len(ranked) > 1 else float(ranked[0])
    coverage, agreement = coverage_signals(term_weights(question, index, passages), passages)
    return Evidence(top, gap, coverage, agreement, confidence(top, gap, coverage, agreement))


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
