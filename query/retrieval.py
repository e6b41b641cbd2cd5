"""Retrieval over one version through LlamaIndex: dense, or hybrid (BM25 fused by reciprocal rank).

A ``VersionIndex`` wraps ``VectorStoreIndex.from_vector_store(chroma.vector_store(...))`` for
one version's Chroma collection plus that version's BM25 index; ``LruCache`` keeps them
warm per process so that a query does not rebuild anything.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from pydantic import PrivateAttr

from core import chroma as chroma_access
from core.bm25 import BM25Index
from core.chroma import ChromaClient, ChromaCollection, FilterValue, Rows
from core.config import RetrievalConfig
from core.embedding import Embedder
from core.errors import VersionDropped
from core.models import Version
from query.evidence import language

K = TypeVar("K")
V = TypeVar("V")
RRF_K = 60  # the usual reciprocal-rank-fusion constant
# A delta version's own chunks up to this many are held in each API process (about 10 KiB
# each, as LlamaIndex's in-memory store keeps vectors as lists of floats).
MEMORY_DELTA_MAX_CHUNKS = 2_000
# A delta's base is over-fetched by up to this many hidden chunks; beyond, Chroma filters them out.
OVERFETCH_MAX_CHUNKS = 200


class LlamaEmbedding(BaseEmbedding):
    """ragkeep's ``Embedder`` as a LlamaIndex embedding model (never a hub download)."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder) -> None:
        super().__init__(model_name=embedder.model_id, embed_batch_size=embedder.batch_size)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._embedder.embed_query(query)[0]]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._embedder.embed(texts)]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk; ``score`` is the cosine similarity to the question."""

    chunk_id: str
    text: str
    score: float
    metadata: dict[str, Any]


def _none_if_blank(value: Any) -> Any:
    return None if value == "" else value


def metadata_filters(
    filters: Mapping[str, FilterValue | list[FilterValue]], exclude_documents: frozenset[str] = frozenset()
) -> MetadataFilters | None:
    """AND of equality filters (a list means any of its values), minus ``exclude_documents``."""
    items: list[MetadataFilter | MetadataFilters] = []
    for key, value in filters.items():
        if isinstance(value, list):
            items.append(MetadataFilter(key=key, value=value, operator=FilterOperator.IN))
        else:
            items.append(MetadataFilter(key=key, value=value, operator=FilterOperator.EQ))
    if exclude_documents:
        items.append(MetadataFilter(key="document_id", value=sorted(exclude_documents), operator=FilterOperator.NIN))
    return MetadataFilters(filters=items) if items else None


@dataclass(frozen=True)
class Base:
    """What a delta version reads of its base version: the collection, minus ``hidden`` documents."""

    chroma_name: str
    hidden: frozenset[str]
    hidden_chunks: int

    @classmethod
    def of(cls, version: Version) -> Base | None:
        """What ``version`` reads of its base; None for a full version."""
        if not version.base_collection:
            return None
        return cls(version.base_collection, frozenset(version.hidden_documents), version.hidden_chunk_count)


@dataclass(frozen=True)
class Candidate:
    """A chunk ranked by its vector, before its text is read: ``score`` is its cosine similarity."""

    chunk_id: str
    score: float
    base: bool = False  # found in a delta version's base collection


def _hit(chunk: str, node: BaseNode, score: float) -> Hit:
    metadata = {k: _none_if_blank(v) for k, v in node.metadata.items()}
    return Hit(chunk, node.get_content(), score, metadata)


class _Store:
    """One Chroma collection behind a LlamaIndex vector index."""

    def __init__(self, collection: ChromaCollection, index: VectorStoreIndex) -> None:
        self.collection = collection
        self.index = index

    @classmethod
    def load(cls, collection: ChromaCollection, embed_model: LlamaEmbedding) -> _Store:
        store = chroma_access.vector_store(collection)
        return cls(collection, VectorStoreIndex.from_vector_store(store, embed_model=embed_model))

    def ranked(
        self,
        vector: list[float],
        top_k: int,
        filters: Mapping[str, FilterValue | list[FilterValue]],
        exclude_documents: frozenset[str] = frozenset(),
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``top_k`` nearest chunks, best first: ids and distances only."""
        found = chroma_access.nearest(self.collection, vector, top_k, filters, sorted(exclude_documents))
        # As LlamaIndex's Chroma store reports it (exp(-distance)), turned back into the cosine
        # (cosine space: cosine = 1 - distance) the way the scores have always been computed.
        return [(chunk, round(_cosine(math.exp(-distance)), 6)) for chunk, distance in found]

    def fetch(self, scores: Mapping[str, float]) -> dict[str, Hit]:
        """Hits of ranked chunks (``scores``: chunk id -> cosine): their texts and metadata read now."""
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        if not scores:
            return {}
        found = {}
        for chunk, (text, metadata, _) in self.get(list(scores), {}, vectors=False).items():
            # The node LlamaIndex's Chroma store would have made of the row.
            found[chunk] = _hit(chunk, metadata_dict_to_node(dict(metadata or {}), text=text), scores[chunk])
        return found

    def dense(
        self,
        vector: list[float],
        top_k: int,
        filters: Mapping[str, FilterValue | list[FilterValue]],
        exclude_documents: frozenset[str] = frozenset(),
    ) -> list[Hit]:
        """The ``top_k`` nearest chunks with their texts, in one query (when all of them are wanted)."""
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        found = chroma_access.nearest_rows(self.collection, vector, top_k, filters, sorted(exclude_documents))
        return [
            _hit(chunk, metadata_dict_to_node(dict(metadata or {}), text=text), round(_cosine(math.exp(-distance)), 6))
            for chunk, distance, text, metadata in found
        ]

    def get(self, ids: list[str], filters: Mapping[str, FilterValue | list[FilterValue]], vectors: bool = True) -> Rows:
        return chroma_access.rows(self.collection, ids, filters, vectors=vectors)

    def admitted(self, ids: list[str], filters: Mapping[str, FilterValue | list[FilterValue]]) -> set[str]:
        """Which of ``ids`` are here and match ``filters`` (ids only: nothing else is read)."""
        return chroma_access.matching_ids(self.collection, ids, filters)


def _cosine(similarity: float) -> float:
    return 1.0 + float(np.log(similarity)) if similarity > 0 else -1.0


class _MemoryStore(_Store):
    """A delta version's own chunks, held in this process in LlamaIndex's in-memory vector store.

    A delta's collection is small, and a second Chroma round trip per query (about 3 ms)
    costs more than scoring its vectors here.
    """

    def __init__(self, collection: ChromaCollection, index: VectorStoreIndex, rows: Rows, nodes: dict[str, BaseNode]):
        super().__init__(collection, index)
        self.rows = rows
        self.nodes = nodes

    @classmethod
    def load(cls, collection: ChromaCollection, embed_model: LlamaEmbedding) -> _Store:
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        rows = chroma_access.rows(collection)
        nodes: dict[str, BaseNode] = {}
        for chunk, (text, metadata, vector) in rows.items():
            node = metadata_dict_to_node(dict(metadata or {}), text=text)
            node.id_, node.embedding = chunk, [float(x) for x in vector]
            nodes[chunk] = node
        return cls(collection, VectorStoreIndex(list(nodes.values()), embed_model=embed_model), rows, nodes)

    def ranked(
        self,
        vector: list[float],
        top_k: int,
        filters: Mapping[str, FilterValue | list[FilterValue]],
        exclude_documents: frozenset[str] = frozenset(),
    ) -> list[tuple[str, float]]:
        result = self.index.vector_store.query(
            VectorStoreQuery(
                query_embedding=vector,
                similarity_top_k=top_k,
                filters=metadata_filters(filters, exclude_documents),
            )
        )
        # The in-memory store reports the cosine itself.
        return [(c, round(float(s), 6)) for c, s in zip(result.ids or [], result.similarities or [], strict=True)]

    def fetch(self, scores: Mapping[str, float]) -> dict[str, Hit]:
        return {chunk: _hit(chunk, self.nodes[chunk], score) for chunk, score in scores.items() if chunk in self.nodes}

    def dense(
        self,
        vector: list[float],
        top_k: int,
        filters: Mapping[str, FilterValue | list[FilterValue]],
        exclude_documents: frozenset[str] = frozenset(),
    ) -> list[Hit]:
        ranked = self.ranked(vector, top_k, filters, exclude_documents)
        found = self.fetch(dict(ranked))
        return [found[chunk] for chunk, _ in ranked]

    def get(self, ids: list[str], filters: Mapping[str, FilterValue | list[FilterValue]], vectors: bool = True) -> Rows:
        def matches(metadata: Mapping[str, Any] | None) -> bool:
            meta = metadata or {}
            return all(meta.get(k) in v if isinstance(v, list) else meta.get(k) == v for k, v in filters.items())

        return {chunk: self.rows[chunk] for chunk in ids if chunk in self.rows and matches(self.rows[chunk][1])}

    def admitted(self, ids: list[str], filters: Mapping[str, FilterValue | list[FilterValue]]) -> set[str]:
        return set(self.get(ids, filters))


def _collection(client: ChromaClient, chroma_name: str) -> ChromaCollection:
    collection = chroma_access.get_collection(client, chroma_name)
    if collection is None:
        raise VersionDropped(f"the vectors of this version ({chroma_name}) are gone")
    return collection


class VersionIndex:
    """The vectors (and BM25 index) of one version; a delta version also reads its base's."""

    def __init__(
        self,
        client: ChromaClient,
        chroma_name: str,
        embed_model: LlamaEmbedding,
        load_bm25: Callable[[], BM25Index | None],
        base: Base | None = None,
    ) -> None:
        own = _collection(client, chroma_name)
        # A delta's own chunks are searched in memory, unless there are too many to hold.
        in_memory = base is not None and own.count() <= MEMORY_DELTA_MAX_CHUNKS
        self.own = (_MemoryStore if in_memory else _Store).load(own, embed_model)
        self.base = base
        self.base_store = _Store.load(_collection(client, base.chroma_name), embed_model) if base else None
        self._load_bm25 = load_bm25
        self._bm25: BM25Index | None = None
        self._document_chunks: Counter[str] | None = None  # chunks per document, for ``title_match``
        self._bm25_lock = threading.Lock()

    def bm25(self) -> BM25Index | None:
        with self._bm25_lock:
            if self._bm25 is None:
                self._bm25 = self._load_bm25()
            return self._bm25

    def ranked(
        self, vector: np.ndarray, top_k: int, filters: Mapping[str, FilterValue | list[FilterValue]]
    ) -> list[Candidate]:
        """The ``top_k`` chunks nearest to ``vector``, best first, by id and score: no text is read yet."""
        embedding: list[float] = vector.tolist()
        found = [Candidate(chunk, score) for chunk, score in self.own.ranked(embedding, top_k, filters)]
        if self.base and self.base_store:
            if self.base.hidden_chunks <= OVERFETCH_MAX_CHUNKS:
                # top_k first; only if hidden chunks took places (rare: they are few), again
                # over-fetching by their count, so that dropping them still leaves top_k.
                for fetch in (top_k, top_k + self.base.hidden_chunks):
                    from_base = self.base_store.ranked(embedding, fetch, filters)
                    hidden = self._hidden([chunk for chunk, _ in from_base])
                    shown = [Candidate(chunk, score, True) for chunk, score in from_base if chunk not in hidden]
                    if len(shown) == len(from_base):
                        break
                found += shown
            else:  # too many to over-fetch: Chroma leaves them out
                from_base = self.base_store.ranked(embedding, top_k, filters, self.base.hidden)
                found += [Candidate(chunk, score, True) for chunk, score in from_base]
            found.sort(key=lambda candidate: -candidate.score)
        return found[:top_k]

    def _hidden(self, ids: list[str]) -> set[str]:
        """Which of the base's ``ids`` belong to hidden documents (ids only are read)."""
        assert self.base and self.base_store
        if not self.base.hidden or not ids:
            return set()
        return self.base_store.admitted(ids, {"document_id": sorted(self.base.hidden)})

    def fetch(self, candidates: Sequence[Candidate]) -> list[Hit]:
        """The hits of ``candidates``, in their order: texts and metadata are read for these only."""
        found = self.own.fetch({c.chunk_id: c.score for c in candidates if not c.base})
        if self.base_store:
            found.update(self.base_store.fetch({c.chunk_id: c.score for c in candidates if c.base}))
        return [found[c.chunk_id] for c in candidates if c.chunk_id in found]

    def dense(
        self, vector: np.ndarray, top_k: int, filters: Mapping[str, FilterValue | list[FilterValue]]
    ) -> list[Hit]:
        """The ``top_k`` nearest chunks with their texts, each part read in one query (no pool to choose from)."""
        embedding: list[float] = vector.tolist()
        hits = self.own.dense(embedding, top_k, filters)
        if self.base and self.base_store:
            if self.base.hidden_chunks <= OVERFETCH_MAX_CHUNKS:
                for fetch in (top_k, top_k + self.base.hidden_chunks):  # as in ``ranked``
                    from_base = self.base_store.dense(embedding, fetch, filters)
                    shown = [hit for hit in from_base if hit.metadata.get("document_id") not in self.base.hidden]
                    if len(shown) == len(from_base):
                        break
                hits += shown
            else:
                hits += self.base_store.dense(embedding, top_k, filters, self.base.hidden)
            hits.sort(key=lambda hit: -hit.score)
        return hits[:top_k]

    def lexical(
        self, question: str, limit: int, filters: Mapping[str, FilterValue | list[FilterValue]]
    ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score), best first, among the chunks ``filters`` admit."""
        index = self.bm25()
        if index is None:
            return []
        # Over-fetch, then let the stores apply the metadata filter to the candidates.
        ranked = index.search(question, limit * 4 if filters else limit)
        if filters and ranked:
            ids = [chunk for chunk, _ in ranked]
            admitted = self.own.admitted(ids, filters)
            if self.base_store and len(admitted) < len(ids):  # the BM25 index holds the version's chunks
                admitted |= self.base_store.admitted([c for c in ids if c not in admitted], filters)
            ranked = [(chunk, score) for chunk, score in ranked if chunk in admitted]
        return ranked[:limit]

    def title_match(self, question: str, documents: Iterable[str]) -> dict[str, float]:
        """Per one of ``documents``, ``question``'s match with its title (``BM25Index.title_match``) times
        ``1 - 1/n`` for a document of ``n`` chunks; empty without titles.

        A one-chunk document's chunk already holds its title line (``ingestion.context``), so a
        title match would count the title twice; the title of a document of many chunks speaks
        for all of them, while each chunk's own text rarely says which document it is.
        """
        index = self.bm25()
        if index is None:
            return {}
        match = index.title_match(question, documents)
        if not match:
            return match
        with self._bm25_lock:
            if self._document_chunks is None:
                self._document_chunks = Counter(chunk_document(chunk) for chunk in index.ids)
            sizes = self._document_chunks
        return {document: score * title_length_factor(max(sizes[document], 1)) for document, score in match.items()}

    def hits(self, ids: list[str], vector: np.ndarray) -> dict[str, Hit]:
        """Hits for chunks found by id (lexical matches), scored by cosine to the question's vector."""
        if not ids:
            return {}
        rows = self.own.get(ids, {})
        if self.base_store and len(rows) < len(ids):
            rows = {**self.base_store.get([c for c in ids if c not in rows], {}), **rows}
        found = {}
        for chunk, (text, meta, emb) in rows.items():
            cosine = float(np.dot(np.asarray(emb, dtype=np.float32), vector))
            metadata = {k: _none_if_blank(v) for k, v in (meta or {}).items() if not k.startswith("_node")}
            found[chunk] = Hit(chunk, text or "", round(cosine, 6), metadata)
        return found


Chunks = TypeVar("Chunks", float, np.ndarray)


def title_length_factor(chunks: Chunks) -> Chunks:
    """What a document of ``chunks`` chunks (at least 1) gets of the title weight: ``1 - 1/n``
    (``VersionIndex.title_match``; the retrieval lab weighs its ``+titlen`` with it too)."""
    return 1.0 - 1.0 / chunks


AUTO_DENSE_WEIGHT = 0.6  # hybrid's automatic weights: see Fusion.for_question
AUTO_DENSE_WEIGHT_CJK = 0.3
# minmax's automatic title weight (Fusion.title_weight; a document of n chunks gets it x (1 - 1/n), see
# VersionIndex.title_match), chosen on the tuning splits: the largest FinanceBench gain while no other set's
# tuning split loses over 0.01 (SciFact: -0.005 at 0.2, -0.012 at 0.3), ties to the smaller.
AUTO_TITLE_WEIGHT = 0.2


@dataclass(frozen=True)
class Fusion:
    """How a hybrid query merges its dense and BM25 rankings.

    ``rrf``: weighted reciprocal rank (each list gives ``weight / (k + rank)``). ``minmax``: each
    list's scores scaled to [0, 1] over its candidates, then a weighted sum; a candidate missing
    from a list gets that list's 0. Rank fusion lets a list's noise count as much as its
    signal; scores keep how far ahead a list's best match is (BM25 on Japanese, where the
    English embedding model ranks almost at random, is the case that shows it).
    """

    method: Literal["rrf", "minmax"] = "rrf"
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    k: int = RRF_K
    # minmax only: + this weight x the question's match with the chunk's document title (0-1, see
    # ``BM25Index.title_match``), so that of near-identical documents the one the question names ranks first.
    title_weight: float = 0.0

    @classmethod
    def for_question(cls, config: RetrievalConfig, question: str) -> Fusion:
        """The collection's fusion for ``question``: its weights, or for an unset one the automatic weight.

        Automatic: dense 0.6 / BM25 0.4, and 0.3 / 0.7 for a question in Chinese, Japanese or Korean,
        which the embedding models (English) rank almost at random. Chosen on the visible sets'
        tuning splits (bench/retrieval_lab.py): 0.5 / 0.5 put FinanceBench 0.02 below dense-only,
        0.6 is the smallest dense weight that keeps every English set within 0.01 of dense-only;
        JSQuAD is best at 0.2-0.45 and loses 0.10 at 0.6.
        """
        dense = AUTO_DENSE_WEIGHT_CJK if language(question) != "en" else AUTO_DENSE_WEIGHT
        title = AUTO_TITLE_WEIGHT if config.title_weight is None else config.title_weight
        return cls(
            config.fusion,
            dense if config.dense_weight is None else config.dense_weight,
            1.0 - dense if config.bm25_weight is None else config.bm25_weight,
            title_weight=title if config.fusion == "minmax" else 0.0,
        )

    def order(
        self,
        dense: Sequence[tuple[str, float]],
        bm25: Sequence[tuple[str, float]],
        title_match: Mapping[str, float] | None = None,
    ) -> list[str]:
        """Chunk ids of both rankings, best first (ties in the order first seen, dense first).

        ``title_match``: per document (the document part of a chunk id), the question's match with its
        title (``VersionIndex.title_match``: weighed by the document's length), added times
        ``title_weight`` to a minmax total.
        """
        if self.method == "rrf":
            ids = [[chunk for chunk, _ in dense], [chunk for chunk, _ in bm25]]
            return fuse_ids(ids, [self.dense_weight, self.bm25_weight], self.k)
        by_dense, by_bm25 = _minmax(dense), _minmax(bm25)
        union = list(dict.fromkeys(chunk for chunk, _ in [*dense, *bm25]))
        total = {c: self.dense_weight * by_dense.get(c, 0.0) + self.bm25_weight * by_bm25.get(c, 0.0) for c in union}
        if self.title_weight and title_match:
            for chunk in union:
                total[chunk] += self.title_weight * title_match.get(chunk_document(chunk), 0.0)
        return sorted(union, key=lambda chunk: -total[chunk])


def _minmax(ranked: Sequence[tuple[str, float]]) -> dict[str, float]:
    if not ranked:
        return {}
    low, high = min(score for _, score in ranked), max(score for _, score in ranked)
    if high <= low:
        return {chunk: 1.0 for chunk, _ in ranked}
    return {chunk: (score - low) / (high - low) for chunk, score in ranked}


def fuse_ids(rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int = RRF_K) -> list[str]:
    """Weighted reciprocal-rank fusion: list ``i`` gives ``weights[i] / (k + rank)`` to each of its ids.

    Ties keep the order in which the ids were first seen (the first ranking's first).
    """
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, chunk in enumerate(ranking, start=1):
            scores[chunk] = scores.get(chunk, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda chunk: -scores[chunk])


def chunk_document(chunk: str) -> str:
    """The document part of a chunk id ``<revision id>:<position>`` (a version holds one revision per document)."""
    return chunk.rsplit(":", 1)[0]


def capped(order: Sequence[str], top_k: int, per_document: int | None) -> list[str]:
    """The first ``top_k`` chunk ids of ``order``, at most ``per_document`` of one document while
    other documents have candidates; places still free then go to the chunks passed over, in
    order, so a collection of few documents still answers ``top_k`` chunks.

    A chunk id is ``<revision id>:<position>``, and a version holds one revision per document.
    """
    if per_document is None:
        return list(order[:top_k])
    taken: dict[str, int] = {}
    chosen: list[str] = []
    passed: list[str] = []
    for chunk in order:
        document = chunk_document(chunk)
        if taken.get(document, 0) < per_document:
            taken[document] = taken.get(document, 0) + 1
            chosen.append(chunk)
            if len(chosen) == top_k:
                return chosen
        else:
            passed.append(chunk)
    return chosen + passed[: top_k - len(chosen)]


def retrieve(
    index: VersionIndex,
    question: str,
    vector: np.ndarray,
    top_k: int,
    hybrid: bool,
    filters: Mapping[str, FilterValue | list[FilterValue]],
    min_score: float | None,
    fusion: Fusion = Fusion(),
    per_document: int | None = None,
) -> list[Hit]:
    """Dense retrieval, or dense + BM25 fused by weighted reciprocal rank.

    ``min_score`` drops dense hits below that cosine similarity; in hybrid mode a chunk
    that BM25 found stays, since lexical matches (names, codes, CJK) are why hybrid exists.
    The rankings are fused by chunk id first, so only the BM25 matches that make the top
    ``top_k`` are read from the vector store. ``per_document`` keeps at most that many
    chunks of one document, so that other documents get the places a long one would fill.
    """
    if not hybrid and not per_document:  # nothing to choose: the top_k are read in one query
        return [hit for hit in index.dense(vector, top_k, filters) if min_score is None or hit.score >= min_score]
    pool = max(top_k * 4, 20)
    # The pool is ranked by id and score; only the chunks chosen are read with their texts.
    dense = index.ranked(vector, pool, filters)
    if min_score is not None:
        dense = [candidate for candidate in dense if candidate.score >= min_score]
    if not hybrid:
        kept = set(capped([candidate.chunk_id for candidate in dense], top_k, per_document))
        return index.fetch([candidate for candidate in dense if candidate.chunk_id in kept])
    lexical = index.lexical(question, pool, filters)
    pairs = [(candidate.chunk_id, candidate.score) for candidate in dense]
    titles = None
    if fusion.title_weight:  # the candidates' documents only: a collection may hold many
        titles = index.title_match(question, {chunk_document(chunk) for chunk, _ in [*pairs, *lexical]})
    order = fusion.order(pairs, lexical, titles)
    chosen = capped(order, top_k, per_document)
    ranked = {candidate.chunk_id: candidate for candidate in dense}
    found = {hit.chunk_id: hit for hit in index.fetch([ranked[chunk] for chunk in chosen if chunk in ranked])}
    found.update(index.hits([chunk for chunk in chosen if chunk not in found], vector))
    return [found[chunk] for chunk in chosen if chunk in found]


class LruCache(Generic[K, V]):
    """A per-process, thread-safe LRU of values that are costly to build (warm indexes, catalog reads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, build: Callable[[], V]) -> V:
        """The value of ``key``, built (outside the lock) if missing; a ``build`` that raises caches nothing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
