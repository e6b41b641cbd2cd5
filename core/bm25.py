"""A small BM25 index over a version's chunks, built at build time and stored as a blob.

Tokenisation handles text with and without spaces: Latin-script words are lowercased
and Porter-stemmed; runs of CJK characters (Japanese, Chinese) become overlapping
character bigrams, because the default embedding model is English-only and a word
tokenizer would see a whole Japanese sentence as one token.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from nltk.stem.porter import PorterStemmer

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")
_STEMMER = PorterStemmer()
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "do",
        "does",
        "did",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "can",
        "may",
        "should",
        "would",
        "about",
        "into",
        "than",
        "then",
        "there",
        "these",
        "those",
        "their",
        "they",
        "we",
        "our",
        "not",
        "no",
    ]
)


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_STEMMER.stem(word))


def tokenize(text: str, drop_stopwords: bool = True) -> list[str]:
    """Lowercased stemmed words; CJK runs as character bigrams (a single character stays a unigram)."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        piece = match.group()
        if _CJK_RUN.match(piece):
            tokens.extend(piece[i : i + 2] for i in range(max(1, len(piece) - 1)))
        elif not (drop_stopwords and piece in STOPWORDS):
            tokens.append(_stem(piece) if piece.isascii() else piece)
    return tokens


@dataclass
class BM25Index:
    ids: list[str]
    doc_lengths: list[int]
    postings: dict[str, list[tuple[int, int]]]
    k1: float = 1.2
    b: float = 0.75

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str]) -> BM25Index:
        postings: dict[str, list[tuple[int, int]]] = {}
        lengths: list[int] = []
        for position, text in enumerate(texts):
            counts = Counter(tokenize(text))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                postings.setdefault(term, []).append((position, tf))
        return cls(list(ids), lengths, postings)

    def search(self, query: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` best (chunk id, BM25 score) pairs, best first; only positive scores."""
        n = len(self.ids)
        if n == 0:
            return []
        average = sum(self.doc_lengths) / n or 1.0
        scores: dict[int, float] = {}
        for term, query_tf in Counter(tokenize(query)).items():
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for position, tf in posting:
                norm = tf + self.k1 * (1 - self.b + self.b * self.doc_lengths[position] / average)
                scores[position] = scores.get(position, 0.0) + query_tf * idf * tf * (self.k1 + 1) / norm
        best = sorted(scores.items(), key=lambda item: -item[1])[:limit]
        return [(self.ids[position], score) for position, score in best]

    def dumps(self) -> bytes:
        payload = {
            "ids": self.ids,
            "lengths": self.doc_lengths,
            "postings": self.postings,
            "k1": self.k1,
            "b": self.b,
            "format": 1,
        }
        return zlib.compress(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(), 6)

    @classmethod
    def loads(cls, data: bytes) -> BM25Index:
        payload = json.loads(zlib.decompress(data))
        postings = {term: [(int(p), int(tf)) for p, tf in entries] for term, entries in payload["postings"].items()}
        return cls(payload["ids"], payload["lengths"], postings, payload["k1"], payload["b"])
