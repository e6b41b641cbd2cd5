"""The BM25 index over a version's chunks, built at build time and stored as a blob.

Tokenisation handles text with and without spaces: Latin-script words are lowercased
and Porter-stemmed; runs of CJK characters (Japanese, Chinese) become overlapping
character bigrams, because the default embedding model is English-only and a word
tokenizer would see a whole Japanese sentence as one token.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import logging
import math
import re
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import bm25s
import numpy as np
from nltk.stem.porter import PorterStemmer

# Scripts read as character runs (kana, CJK ideographs, half-width katakana, hangul). Python counts them as word
# characters (\w), so a pattern meant for Latin words must leave them out explicitly.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\uac00-\ud7af"
# A CJK run, or a run of other letters and digits: CJK characters are word characters too, so
# without the exclusion a run that starts with a digit or a Latin letter swallows the CJK text
# after it ("2014年現在の面積" was one token, not "2014" and the bigrams of 年現在の面積).
_TOKEN = re.compile(rf"[{CJK}]+|[^\W_{CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{CJK}]+$")
_STEMMER = PorterStemmer()
K1, B = 1.2, 0.75
logging.getLogger("bm25s").setLevel(logging.WARNING)
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


_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def title_tokens(text: str, query: bool = False) -> list[str]:
    """``tokenize``'s tokens for matching titles, with letters and digits apart ("FY2022" -> fy, 2022;
    "2024Q2" -> 2024, q, 2), as file names run them together. For a ``query``, adjacent words joined
    too ("Best Buy" -> bestbuy), as file names squash them ("BESTBUY_2023_10K.pdf")."""
    spaced = _LETTER_DIGIT.sub(" ", text.lower())
    tokens = tokenize(spaced)
    if query:
        words = [w for w in _TOKEN.findall(spaced) if w not in STOPWORDS]
        tokens += [
            _stem(a + b)
            for a, b in itertools.pairwise(words)
            if len(a) > 1 and len(b) > 1 and (a + b).isascii() and (a + b).isalpha()  # not "ACME's" -> acmes
        ]
    return tokens


def idf(df: int, documents: int) -> float:
    """Lucene's BM25 inverse document frequency; a term no document holds weighs the most."""
    return math.log(1 + (documents - df + 0.5) / (df + 0.5))


# A title line names its document more than once: its own title, then its file name in parentheses
# ("Document: 10-K - 02/07/2019 - 3M Company (3M 2018 10K)"), then one line per upload metadata field.
_TITLE_PARTS = re.compile(r"[()\n]")
# A year as ``title_tokens`` leaves it ("FY2022" -> 2022; "Q2'2023" -> 2023).
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
# A full date ("filed 02/09/2023"): when a document was written or filed, not the period it is about.
_DATE = re.compile(r"\b[0-9]{1,2}/[0-9]{1,2}/(?:19|20)[0-9]{2}\b")


# A word written with a capital letter ("MGM", "Activision"): a name, which a file name may hold squashed with the
# rest of the company's name ("MGMRESORTS_2023Q2_10Q"). Not preceded by a letter or digit ("iPhone" is not one).
_CAPITALIZED = re.compile(rf"(?<![^\W_{CJK}])[A-Z][^\W_{CJK}]*")
SHORTEST_PREFIX = 3  # "MGM" names "mgmresorts"; "PE" names nothing


def _period_years(piece: str) -> bool:
    """Whether a part of a title line carries a year other than a full date's ("FY2022", "2023Q1", "2018")."""
    return any(_YEAR.fullmatch(t) for t in title_tokens(_DATE.sub(" ", piece)))


class _TitleTerms:
    """The parts of the version's titles as weighted term sets, and which parts hold each term (``BM25Index.named``,
    ``BM25Index.period``).

    Each part of a title line (``_TITLE_PARTS``) is a name of its own: a question that names a
    filing by its file name's company and year is not held back by the accession number in the
    PDF's own title. A term weighs by how many documents' titles hold it.
    """

    def __init__(self, titles: Sequence[str]) -> None:
        pieces = [
            [(piece, terms) for piece in _TITLE_PARTS.split(title) if (terms := frozenset(title_tokens(piece)))]
            for title in titles
        ]
        parts = [[terms for _, terms in of_title] for of_title in pieces]
        documents: dict[str, int] = {}
        for names in parts:
            for term in frozenset().union(*names):
                documents[term] = documents.get(term, 0) + 1
        self.weights = {term: idf(count, len(titles)) for term, count in documents.items()}
        self.documents = documents  # how many titles hold each term
        self.sorted_terms = sorted(documents)  # for the prefix lookup of ``asked``
        self.count = len(titles)
        # the parts that carry a year (``period``): of a title with a part that carries a period's year (a file
        # name's "PEPSICO_2022_10K"), only those: "Form 10-K for Pepsico INC filed 02/09/2023" beside it is filed
        # in 2023 about 2022. A title whose only years are full dates (an 8-K "filed 05/30/2023") keeps them.
        self.dated: list[frozenset[str]] = []
        for of_title in pieces:
            periods = [terms for piece, terms in of_title if _period_years(piece)]
            self.dated += periods or [terms for _, terms in of_title if any(_YEAR.fullmatch(t) for t in terms)]
        self.holders: dict[str, list[int]] = {}
        self.totals: list[float] = []
        for names in parts:
            for held in names:
                for term in held:
                    self.holders.setdefault(term, []).append(len(self.totals))
                self.totals.append(sum(self.weights[t] for t in held))

    def asked(self, query: str) -> set[str]:
        """The title terms ``query`` names: its ``title_tokens`` (``query=True``), and the squashed names its
        capitalized words begin.

        File names squash a company's name ("MGMRESORTS_2023Q2_10Q") and questions shorten it ("MGM's
        interest coverage"): a word written with a capital letter, of at least ``SHORTEST_PREFIX``
        letters, not a stopword, that no title holds as a term, names every title term it begins.
        Lowercase words never do ("best" does not name "bestbuy"); a capitalized first word does.
        """
        asked = set(title_tokens(query, query=True))
        for word in _CAPITALIZED.findall(query):
            for piece in _LETTER_DIGIT.sub(" ", word.lower()).split():
                if len(piece) < SHORTEST_PREFIX or not piece.isalpha() or piece in STOPWORDS:
                    continue
                if _stem(piece) in self.documents:
                    continue
                start = bisect.bisect_left(self.sorted_terms, piece)
                for term in itertools.islice(self.sorted_terms, start, None):
                    if not term.startswith(piece):
                        break
                    asked.add(term)
        return asked

    def named(self, asked: set[str]) -> float:
        shared: dict[int, float] = {}
        for term in asked:
            for part in self.holders.get(term, ()):
                shared[part] = shared.get(part, 0.0) + self.weights[term]
        return max((weight / self.totals[p] for p, weight in shared.items() if self.totals[p] > 0), default=0.0)

    def period(self, asked: set[str]) -> float:
        years = {t for t in asked if _YEAR.fullmatch(t)}
        if not years:
            return 1.0
        # A name: a term with a letter ("3M" is 3, m) that at most half the titles hold (any, among one or two).
        names = {
            t for t in asked if not t.isdigit() and (self.count <= 2 or 2 * self.documents.get(t, 0) <= self.count)
        }
        named = [held for held in self.dated if held & names]
        if not named:
            return 1.0
        return 1.0 if any(max(years) in held for held in named) else 0.0


class BM25Index:
    """BM25 over a version's chunks, scored by bm25s (sparse matrices, numpy) with this module's tokenizer.

    bm25s precomputes every (term, chunk) score at build time into a CSC matrix, so a search
    sums a few matrix columns instead of walking postings in Python. The scoring is Lucene's
    BM25 (k1 1.2, b 0.75), the same ranking as the index it replaced.
    """

    FORMAT = 2

    def __init__(self, ids: Sequence[str], model: bm25s.BM25, titles: Mapping[str, str] | None = None) -> None:
        self.ids = list(ids)
        self.model = model
        # Each document's title, keyed as the document part of its chunks' ids (``<revision id>:<position>``),
        # for ``title_match``; empty for versions built before titles were stored, or with ``ingestion.context: off``.
        self.titles = dict(titles or {})
        self._title_index: BM25Index | None = None
        self._title_positions: dict[str, int] = {}
        self._title_terms: _TitleTerms | None = None
        self._title_lock = threading.Lock()

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str], titles: Mapping[str, str] | None = None) -> BM25Index:
        return cls.from_tokens(ids, [tokenize(text) for text in texts], titles)

    @classmethod
    def from_tokens(
        cls, ids: Sequence[str], tokens: Sequence[list[str]], titles: Mapping[str, str] | None = None
    ) -> BM25Index:
        model = bm25s.BM25(k1=K1, b=B, method="lucene")
        if ids:
            model.index([list(t) for t in tokens], show_progress=False)
        return cls(ids, model, titles)

    def title_match(self, query: str, documents: Iterable[str] | None = None) -> dict[str, float]:
        """Per document: ``query``'s BM25 score against the documents' titles alone, over the best one's (0-1].

        Only ``documents`` (all when None) are returned, and only those whose title shares a term
        with the query. A collection of near-identical filings ("3M 2018 10-K", "3M 2022 10-K") is
        told apart by its titles, which carry the company and the year the question names.
        """
        if not self.titles:
            return {}
        with self._title_lock:
            if self._title_index is None:
                names = list(self.titles)
                self._title_index = BM25Index.from_tokens(names, [title_tokens(self.titles[n]) for n in names])
                self._title_positions = {name: position for position, name in enumerate(names)}
        model = self._title_index.model
        token_ids = model.get_tokens_ids(title_tokens(query, query=True))
        if not token_ids:
            return {}
        scores = model.get_scores_from_ids(token_ids)
        best = float(scores.max())
        if best <= 0:
            return {}
        positions = self._title_positions
        wanted = self._title_index.ids if documents is None else documents
        return {
            document: float(scores[position]) / best
            for document in wanted
            if (position := positions.get(document)) is not None and scores[position] > 0
        }

    def named(self, query: str) -> float:
        """How fully ``query`` names one of the documents, 0-1 (0 when the version has no titles).

        Of each title (each of its parts: ``_TitleTerms``) sharing a term with the query: the share
        of its terms (``title_tokens``, weighted by ``idf`` among the version's titles, so
        "Document" or "10-K" in every title weighs little) that the query holds; the best share.
        "Boeing's FY2022 revenue" names "BOEING_2022_10K" most, "BOEING_2018_10K" in part and
        "3M_2018_10K" hardly at all. The query's terms are ``_TitleTerms.asked``'s: "MGM" also names
        "MGMRESORTS_2023Q2_10Q".
        """
        if not self.titles:
            return 0.0
        terms = self._terms()
        return terms.named(terms.asked(query))

    def _terms(self) -> _TitleTerms:
        with self._title_lock:
            if self._title_terms is None:
                self._title_terms = _TitleTerms(list(self.titles.values()))
            return self._title_terms

    def period(self, query: str) -> float:
        """Whether the documents ``query`` names carry the latest year it asks about: 1 or 0 (1 when it cannot tell).

        Of the parts of title lines (``_TitleTerms``) that carry a year and share a name with the query
        (a term, not a number, that at most half the titles hold): 0 when none carries the query's
        latest year, else 1. "Boeing's FY2023 outlook" in a version whose only Boeing title is
        "BOEING_2018_10K" is 0; "Boeing's FY2018 revenue" there is 1; "Corning's tax rate between
        FY2021 and FY2022" with only "CORNING_2021_10K" is 0 (a filing reports the years before its
        own, not after). By part, as ``named``: a heading "Item 1. Business" names no year of the file
        name "CORNING 2022 10K" beside it. A query without a year, a version whose titles carry no
        year (papers, manuals), or a query naming no dated title is 1: nothing to tell. A title's year
        is the one it carries, not the years its text covers: a file name's, or a full date's
        ("filed 05/30/2023") where no part of the title carries another (a 10-K "filed 02/09/2023"
        beside "PEPSICO_2022_10K" is of 2022). The query's names are ``_TitleTerms.asked``'s, as for ``named``.
        """
        if not self.titles:
            return 1.0
        terms = self._terms()
        return terms.period(terms.asked(query))

    def search(self, query: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` best (chunk id, BM25 score) pairs, best first; only positive scores."""
        return self.search_tokens(tokenize(query), limit)

    def search_tokens(self, tokens: Sequence[str], limit: int) -> list[tuple[str, float]]:
        """``search`` for a query already tokenized."""
        if not self.ids or limit <= 0:
            return []
        token_ids = self.model.get_tokens_ids(list(tokens))
        if not token_ids:
            return []
        scores = self.model.get_scores_from_ids(token_ids)
        count = min(limit, len(scores))
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in best if scores[i] > 0]

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks hold each of ``terms`` (tokens as ``tokenize`` makes them), and the chunk count.

        bm25s keeps one sparse column per term, holding a score for every chunk that has the
        term: its length is the term's document frequency. A term the index never saw has 0.
        """
        if not self.ids:
            return {term: 0 for term in terms}, 0
        vocab, indptr = self.model.vocab_dict, self.model.scores["indptr"]
        counts = {}
        for term in terms:
            position = vocab.get(term)
            counts[term] = 0 if position is None else int(indptr[position + 1] - indptr[position])
        return counts, len(self.ids)

    def dumps(self) -> bytes:
        empty = np.zeros(0, dtype=np.int32)
        scores = self.model.scores if self.ids else {}
        header = {
            "format": self.FORMAT,
            "ids": self.ids,
            "vocab": self.model.vocab_dict if self.ids else {},
            "num_docs": int(scores.get("num_docs", 0)),
            "titles": self.titles,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            header=np.frombuffer(json.dumps(header, ensure_ascii=False).encode(), dtype=np.uint8),
            data=scores.get("data", empty),
            indices=scores.get("indices", empty),
            indptr=scores.get("indptr", empty),
        )
        return zlib.compress(buffer.getvalue(), 6)

    @classmethod
    def loads(cls, data: bytes) -> BM25Index:
        raw = zlib.decompress(data)
        if raw.startswith(b"{"):  # format 1: postings as JSON, written by versions built before bm25s
            payload = json.loads(raw)
            tokens: list[list[str]] = [[] for _ in payload["ids"]]
            for term, entries in payload["postings"].items():
                for position, tf in entries:
                    tokens[int(position)].extend([term] * int(tf))
            return cls.from_tokens(payload["ids"], tokens)
        with np.load(io.BytesIO(raw)) as arrays:
            header = json.loads(arrays["header"].tobytes())
            model = bm25s.BM25(k1=K1, b=B, method="lucene")
            if header["ids"]:
                model.scores = {k: arrays[k] for k in ("data", "indices", "indptr")}
                model.scores["num_docs"] = header["num_docs"]
                model.vocab_dict = header["vocab"]
                model.unique_token_ids_set = set(model.vocab_dict.values())
                model.nonoccurrence_array = None  # Lucene's BM25 has no score for absent terms
        return cls(header["ids"], model, header.get("titles"))
