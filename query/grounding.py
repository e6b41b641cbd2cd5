"""Whether each sentence of an answer is supported by the passages it cites (a hallucination check).

LLM and extractive answers are checked the same way. Per answer sentence:

- its passages: the ones it cites (``[n]``); a sentence that cites none is checked against the
  passages the whole answer cites (else every retrieved passage);
- ``lexical``: the share of its content terms (stemmed, CJK as character bigrams) found in them;
- ``similarity``: the embedding cosine to the closest sentence of those passages (one batched
  call of the version's embedding model; skipped for a sentence that those passages contain word
  for word, as extractive sentences are);
- every number (dates and amounts included) and proper name in the sentence must appear in
  those passages: one that does not is listed in ``unsupported_tokens``.

A sentence is supported when nothing in it is unlisted from the passages and it is close to them
lexically or semantically (``LEXICAL_MIN`` or ``SIMILARITY_MIN``); ``strength`` is the larger of
the two scores. ``Grounding.score`` is the share of supported sentences.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.bm25 import CJK, tokenize

# A paraphrase keeps most content words or most meaning; thresholds set by hand on the unit
# examples (tests/query/test_grounding.py): a faithful paraphrase scores 0.6+ on either, an
# unrelated sentence under 0.35 lexically and under 0.5 in cosine with all-MiniLM-L6-v2.
LEXICAL_MIN = 0.6
SIMILARITY_MIN = 0.7

# A stop before a capital (not "e.g. the"), a stop right after a citation marker ("... [1]. mTORC1
# inhibition ..." ends a sentence whatever follows), a CJK stop, or a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^a-z0-9])|(?<=\d\][.!?])\s+|(?<=[\u3002\uff01\uff1f])|\n+")
_CITATION = re.compile(r"\s*\[(\d{1,3})\]")
_MARKER_AFTER_STOP = re.compile(r"([.!?\u3002])((?:\s*\[\d{1,3}\])+)")
# Numbers, with thousands separators, decimals, and a trailing percent sign.
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[,.]\d+)*")
# Proper names and identifiers: a capital inside or at the end (BERT, DistilBERT, GPT-4, iPhone),
# or a capitalised word that does not start the sentence. ``\b`` would not do: CJK characters are
# word characters, so "はDistilBERTは" has no boundary and the name inside a Japanese sentence was
# never checked; a Latin word ends where CJK text starts, as in ``core.bm25.tokenize``.
_LATIN_WORD = rf"[^\W{CJK}]"
_CAPITALISED = re.compile(rf"(?<!{_LATIN_WORD})[A-Za-z](?:{_LATIN_WORD}|-)*(?<!-)(?!{_LATIN_WORD})")
_GENERIC = frozenset(
    (
        "I",
        "A",
        "The",
        "This",
        "That",
        "These",
        "Those",
        "It",
        "Its",
        "In",
        "On",
        "At",
        "For",
        "From",
        "By",
        "With",
        "And",
        "Or",
        "But",
        "If",
        "When",
        "While",
        "Also",
        "However",
        "Therefore",
        "Thus",
        "Yes",
        "No",
        "Not",
        "According",
        "Based",
        "Section",
        "Table",
        "Figure",
        "Page",
        "Note",
    )
)


@dataclass(frozen=True)
class SentenceSupport:
    """One answer sentence: supported or not, how strongly, by which passages, and what it invents."""

    text: str
    supported: bool
    strength: float
    cited: tuple[int, ...]
    unsupported_tokens: tuple[str, ...]


@dataclass(frozen=True)
class Grounding:
    """Per-sentence support of an answer; ``score`` is the share of supported sentences (None: nothing to check)."""

    sentences: tuple[SentenceSupport, ...] = ()
    score: float | None = None

    @property
    def unsupported(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if not s.supported]


def split_sentences(answer: str) -> list[str]:
    """The answer's sentences, citation markers kept with the sentence they end ("It is. [1]" too)."""
    parts = (s.strip() for s in _SENTENCE_END.split(_MARKER_AFTER_STOP.sub(r"\2\1", answer)) if s)
    return [p for p in parts if p and not _CITATION.fullmatch(p)]


def _normal_number(token: str) -> str:
    return token.replace(",", "").rstrip(".")


def numbers(text: str) -> set[str]:
    return {_normal_number(n) for n in _NUMBER.findall(text)}


def names(sentence: str) -> list[str]:
    """Proper names and identifiers in ``sentence`` (Latin script), in order."""
    found: list[str] = []
    for position, match in enumerate(_CAPITALISED.finditer(sentence)):
        word = match.group()
        inner_capital = any(ch.isupper() for ch in word[1:])
        starts_capital = word[0].isupper() and position > 0
        if (inner_capital or starts_capital) and word not in _GENERIC and not word.isdigit():
            found.append(word)
    return found


def invented_tokens(sentence: str, passages: str) -> list[str]:
    """The numbers and names of ``sentence`` that ``passages`` do not contain."""
    missing = [n for n in dict.fromkeys(_normal_number(x) for x in _NUMBER.findall(sentence)) if n]
    held_numbers = numbers(passages)
    invented = [n for n in missing if n not in held_numbers]
    lowered = passages.lower()
    invented += [name for name in dict.fromkeys(names(sentence)) if name.lower() not in lowered]
    return invented


def _lexical(sentence: str, passages_terms: set[str]) -> float:
    terms = set(tokenize(sentence))
    if not terms:
        return 1.0
    return len(terms & passages_terms) / len(terms)


def _passage_sentences(text: str) -> list[str]:
    return [s for s in split_sentences(text) if len(s) >= 8]


def check(
    answer: str,
    passages: Sequence[str],
    answer_cited: Sequence[int],
    embed: Callable[[list[str]], np.ndarray] | None,
) -> Grounding:
    """Check every sentence of ``answer`` against ``passages`` (numbered from 1, as the answer cites them).

    ``embed`` is the version's embedding model (L2-normalised vectors); without it, only the
    lexical and token checks run.
    """
    sentences = split_sentences(answer)
    if not sentences or not passages:
        return Grounding()
    fallback = [n for n in answer_cited if 1 <= n <= len(passages)] or list(range(1, len(passages) + 1))
    plans: list[tuple[str, tuple[int, ...], str, float, list[str]]] = []
    for sentence in sentences:
        own = tuple(sorted({int(n) for n in _CITATION.findall(sentence) if 1 <= int(n) <= len(passages)}))
        cited = own or tuple(fallback)
        bare = _CITATION.sub("", sentence).strip()
        source = "\n".join(passages[n - 1] for n in cited)
        lexical = _lexical(bare, set(tokenize(source)))
        plans.append((bare, cited, source, lexical, invented_tokens(bare, source)))
    similarity = _similarities(plans, passages, embed)
    checked = []
    for (bare, cited, _, lexical, invented), cosine in zip(plans, similarity, strict=True):
        strength = max(lexical, cosine)
        supported = not invented and (lexical >= LEXICAL_MIN or cosine >= SIMILARITY_MIN)
        checked.append(SentenceSupport(bare, supported, round(min(1.0, strength), 4), cited, tuple(invented)))
    score = sum(s.supported for s in checked) / len(checked)
    return Grounding(tuple(checked), round(score, 4))


def _similarities(
    plans: Sequence[tuple[str, tuple[int, ...], str, float, list[str]]],
    passages: Sequence[str],
    embed: Callable[[list[str]], np.ndarray] | None,
) -> list[float]:
    """Each sentence's cosine to the closest sentence of its passages (1.0 for a verbatim one), in one batch."""
    # Markers are compared without citation markers on either side: a passage quoting a paper keeps its "[1]".
    result = [
        1.0 if _squash(bare) and _squash(bare) in _squash(_CITATION.sub("", source)) else 0.0
        for bare, _, source, _, _ in plans
    ]
    todo = [i for i, value in enumerate(result) if value < 1.0 and plans[i][0]]
    if embed is None or not todo:
        return result
    needed = sorted({n for i in todo for n in plans[i][1]})
    by_passage = {n: _passage_sentences(passages[n - 1]) or [passages[n - 1]] for n in needed}
    texts = [plans[i][0] for i in todo]
    offsets: dict[int, tuple[int, int]] = {}
    for n in needed:
        offsets[n] = (len(texts), len(texts) + len(by_passage[n]))
        texts.extend(by_passage[n])
    vectors = embed(texts)
    for row, i in enumerate(todo):
        rows = np.concatenate([vectors[a:b] for n in plans[i][1] for a, b in [offsets[n]]])
        result[i] = float(np.max(rows @ vectors[row])) if len(rows) else 0.0
    return result


class SentenceVectors:
    """``embed`` with a per-process LRU of the vectors of texts it saw (one per embedding model).

    An LLM answer's sentences are compared with every sentence of the passages they cite: those
    passage sentences are the bulk of grounding's embedding work, and the same popular chunks
    are cited again and again. Only the texts not yet cached are embedded, in one batch.
    """

    def __init__(self, embed: Callable[[list[str]], np.ndarray], size: int = 10_000) -> None:
        self.embed = embed
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.embedded = 0  # texts embedded (cache misses), for tests and the bench

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        fresh = dict(zip(missing, self.embed(missing), strict=True)) if missing else {}
        with self._lock:
            self.embedded += len(missing)
            found = [fresh[t] if t in fresh else self._vectors[t] for t in texts]
            for text, vector in fresh.items():
                self._vectors[text] = vector
            for text in texts:
                if text in self._vectors:
                    self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return np.stack(found) if found else np.zeros((0, 0), dtype=np.float32)


def _squash(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!?\u3002 ")
