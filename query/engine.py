"""Answer a question from one version of a collection: resolve, retrieve, answer, log.

Library code used by the API's ``/query`` and ``/v1/chat/completions`` routes; it holds
the per-process warm state (embedding model, version indexes, LLM client).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core import catalog
from core.blobs import BlobStore
from core.bm25 import BM25Index
from core.chroma import ChromaClient, FilterValue
from core.config import CollectionConfig
from core.db import Database
from core.embedding import Embedder
from core.errors import InvalidInput, NotFound, VersionDropped, VersionNotFound, VersionNotReady
from core.models import Collection, Version, VersionState, new_id, utcnow
from core.settings import Settings
from query import evidence as evidence_model
from query.answer import Answer, LLMClient, cited_numbers, context_block, extractive_answer, flagged
from query.evidence import Evidence
from query.grounding import Grounding, SentenceSupport, SentenceVectors
from query.grounding import check as check_grounding
from query.querylog import QueryLogWriter
from query.retrieval import Base, Fusion, Hit, LlamaEmbedding, LruCache, VersionIndex, retrieve

log = logging.getLogger(__name__)

# Resolved (collection, version) pairs kept per process; each is a few KiB of detached rows.
TARGET_CACHE_SIZE = 256
DECLINED_CITATIONS = 3  # the closest passages a declined answer still cites

Mode = Literal["answer", "retrieve"]


@dataclass(frozen=True)
class QueryRequest:
    collection: str
    question: str
    top_k: int | None = None
    version: int | None = None
    filters: Mapping[str, FilterValue | list[FilterValue]] = field(default_factory=dict)
    mode: Mode = "answer"
    history: Sequence[tuple[str, str]] = ()
    client: str | None = None
    record: bool = True  # False for evaluation runs: they are not user traffic


@dataclass(frozen=True)
class Citation:
    n: int
    document_id: str | None
    filename: str | None
    page: int | None
    section: str | None
    chunk_id: str
    score: float
    text: str
    # The passage's text was read by OCR (an image, a scanned page), with the recogniser's confidence (0-1).
    ocr: bool = False
    ocr_confidence: float | None = None


@dataclass
class QueryResult:
    query_id: str
    collection: str
    version: int
    answer: str
    answer_mode: str
    citations: list[Citation]
    usage: dict[str, Any]
    latency_ms: dict[str, float]
    warnings: list[str]
    model: str | None
    sources: list[Citation] = field(default_factory=list)  # every retrieved chunk, cited or not
    prompt_revision: int = 0
    # How strongly the retrieved passages support an answer (0-1, query.evidence), and its signals.
    confidence: float = 0.0
    evidence: Evidence | None = None
    # Per answer sentence, whether the passages it cites support it (query.grounding).
    grounding: Grounding = field(default_factory=Grounding)


@dataclass(frozen=True)
class _Target:
    """What a query reads from the catalog: detached ORM objects, never modified."""

    collection: Collection
    version: Version
    config: CollectionConfig
    prompt: tuple[str, int]  # template and its revision (0: the config's inline template)


@dataclass
class _Prepared:
    target: _Target
    hits: list[Hit]
    embedding_tokens: int
    started: float
    retrieve_ms: float
    evidence: Evidence


def _citation(n: int, hit: Hit) -> Citation:
    page = hit.metadata.get("page")
    confidence = hit.metadata.get("ocr_confidence")
    return Citation(
        n=n,
        document_id=hit.metadata.get("document_id"),
        filename=hit.metadata.get("filename"),
        page=int(page) if isinstance(page, (int, float)) else None,
        section=hit.metadata.get("section") or None,
        chunk_id=hit.chunk_id,
        score=hit.score,
        text=hit.text,
        ocr=bool(hit.metadata.get("ocr")),
        ocr_confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
    )


class QueryEngine:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        chroma: ChromaClient,
        embedders: Callable[[str], Embedder] | None = None,
    ) -> None:
        """``embedders`` gives the embedder of a model id (a worker shares its own); by default the engine's."""
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.chroma = chroma
        self.embedder = embedders or self._own_embedder
        self._embedders: dict[str, Embedder] = {}
        self._embedders_lock = threading.Lock()
        self.indexes: LruCache[str, VersionIndex] = LruCache(settings.query.index_cache_size)
        # Keyed by (collection, pinned version or None, catalog stamp): a changed stamp is a
        # new key, and the stale entry ages out.
        self._targets: LruCache[tuple[str, int | None, tuple[Any, ...]], _Target] = LruCache(TARGET_CACHE_SIZE)
        self._sentence_vectors: dict[str, SentenceVectors] = {}  # per embedding model: grounding's cache
        self.llm = LLMClient(settings.llm) if settings.llm.configured else None
        self.query_log = QueryLogWriter(db.engine)

    def close(self) -> None:
        """Write the queued query-log rows (at shutdown)."""
        self.query_log.close()

    def _own_embedder(self, model_id: str) -> Embedder:
        with self._embedders_lock:
            if model_id not in self._embedders:
                self._embedders[model_id] = Embedder(
                    model_id,
                    threads=None,
                    backend=self.settings.embedding_backend,
                    graph_cache=self.settings.model_cache_dir,
                )
            return self._embedders[model_id]

    # ---------------------------------------------------------------- steps

    def _resolve(self, request: QueryRequest) -> _Target:
        """The collection, version, config and prompt that answer ``request``.

        Reading them costs a session, two ORM objects and a config validation (about 1 ms of
        a query's CPU); they are kept per process and re-read only when the catalog's stamp
        of that collection and version changes (a five-column select), so a publish, a
        rollback, a config change or a dropped version made by any process is seen at once.
        """
        with self.db.engine.connect() as connection:
            stamp = catalog.version_stamp(connection, request.collection, request.version)
        if stamp is None:  # no such collection: the full read raises the right error
            return self._read_target(request)
        # Stamped before the read: a change in between only makes the next query read again.
        return self._targets.get((request.collection, request.version, stamp), lambda: self._read_target(request))

    def _read_target(self, request: QueryRequest) -> _Target:
        with self.db.session() as session:
            collection, version = catalog.collection_and_version(session, request.collection, request.version)
            config = catalog.collection_config(collection)
            if version is None and request.version is not None:
                raise VersionNotFound(f"version {request.version} of collection {collection.name!r} does not exist")
            if version is None:
                if collection.live_version_id is None:
                    raise VersionNotReady(f"collection {collection.name!r} has no live version yet")
                raise NotFound(f"the live version of {collection.name!r} is missing")
            if version.dropped_at is not None:
                raise VersionDropped(
                    f"version {version.number} of {collection.name!r} was dropped (keep_versions); its vectors are gone"
                )
            if version.state not in (VersionState.ready, VersionState.live, VersionState.archived):
                raise VersionNotReady(f"version {version.number} of {collection.name!r} is {version.state}")
            prompt = (config.prompt_template, 0)
            if config.prompt_revision is not None:
                stored = catalog.get_prompt(session, collection, config.prompt_revision)
                prompt = (stored.template, stored.revision)
            session.expunge_all()
        return _Target(collection, version, config, prompt)

    def _index(self, collection: Collection, version: Version) -> VersionIndex:
        def load_bm25() -> BM25Index | None:
            if not version.bm25_sha256:
                return None
            return BM25Index.loads(self.blobs.get(collection.id, version.bm25_sha256))

        # Keyed by version id: a collection deleted and re-created under the same name reuses
        # Chroma collection names, never version ids.
        return self.indexes.get(
            version.id,
            lambda: VersionIndex(
                self.chroma,
                version.chroma_collection,
                LlamaEmbedding(self.embedder(version.embedding_model)),
                load_bm25,
                Base.of(version),
            ),
        )

    def _prepare(self, request: QueryRequest) -> _Prepared:
        started = time.perf_counter()
        question = request.question.strip()
        if not question:
            raise InvalidInput("question is empty")
        most = self.settings.query.max_top_k
        if request.top_k is not None and request.top_k > most:
            raise InvalidInput(f"top_k may be at most {most}")  # before the catalog: a bad request is a 422
        target = self._resolve(request)
        version, config = target.version, target.config
        top_k = request.top_k or min(config.retrieval.top_k, most)
        index = self._index(target.collection, version)
        embedder = self.embedder(version.embedding_model)  # the version's model: queries match its vectors
        vector, tokens = embedder.embed_query(question)
        wanted = config.retrieval
        fusion = Fusion.for_question(wanted, question)
        hits = retrieve(
            index,
            question,
            vector,
            top_k,
            wanted.hybrid,
            request.filters,
            wanted.min_score,
            fusion,
            wanted.max_chunks_per_document,
        )
        signals = evidence_model.evidence(
            question, [h.score for h in hits], [h.text for h in hits], index.bm25(), chunks=version.chunk_count
        )
        return _Prepared(target, hits, tokens, started, (time.perf_counter() - started) * 1000, signals)

    def _abstain_threshold(self, target: _Target) -> float | None:
        """The confidence below which this version declines (None: never).

        The one call site of ``abstain_threshold``: a version's threshold calibrated on its
        golden set goes in as ``calibrated`` (stored by its evaluations, eval.abstention.calibrate).
        """
        return evidence_model.abstain_threshold(
            target.config.answer.abstain, calibrated=target.version.calibrated_threshold
        )

    def _declined(self, question: str, prepared: _Prepared, reason: str) -> Answer:
        """The fixed statement in the question's language, citing the closest passages for a person to check."""
        closest = list(range(1, min(len(prepared.hits), DECLINED_CITATIONS) + 1))
        return Answer(evidence_model.declined_text(question), "abstained", closest, warnings=[reason])

    def _low_confidence(self, question: str, prepared: _Prepared) -> Answer | None:
        """The declined answer when retrieval's evidence is below the threshold, else None."""
        threshold = self._abstain_threshold(prepared.target)
        if not prepared.hits or not evidence_model.declines(prepared.evidence, threshold):
            return None
        return self._declined(
            question,
            prepared,
            f"declined: the retrieved passages do not support an answer (confidence "
            f"{prepared.evidence.confidence:.2f} < threshold {threshold:.2f})",
        )

    def _sentinel(self, question: str, prepared: _Prepared, answer: Answer) -> Answer:
        """The LLM said the context lacks the answer: declined, keeping its token counts."""
        declined = self._declined(question, prepared, "declined: the LLM found no answer in the passages")
        declined.prompt_tokens, declined.completion_tokens = answer.prompt_tokens, answer.completion_tokens
        return declined

    def _grounding(self, prepared: _Prepared, answer: Answer) -> Grounding:
        if answer.mode not in ("llm", "extractive") or not answer.text:
            return Grounding()
        model = prepared.target.version.embedding_model
        embed = self.embedder(model).embed  # outside the lock: the engine's own embedders take it too
        with self._embedders_lock:
            vectors = self._sentence_vectors.setdefault(model, SentenceVectors(embed))
        return check_grounding(answer.text, [h.text for h in prepared.hits], answer.cited, vectors)

    def _prompt(self, prepared: _Prepared, question: str) -> str:
        return prepared.target.prompt[0].format(context=context_block(prepared.hits), question=question)

    def _history(self, prepared: _Prepared, request: QueryRequest) -> Sequence[tuple[str, str]]:
        """The conversation before the prompt; without the sentinel in the template, a system message asks for it."""
        if evidence_model.SENTINEL in prepared.target.prompt[0]:
            return request.history
        return [("system", evidence_model.SENTINEL_INSTRUCTION), *request.history]

    def _finish(
        self, request: QueryRequest, prepared: _Prepared, answer: Answer | None, generate_ms: float
    ) -> QueryResult:
        sources = [_citation(n, hit) for n, hit in enumerate(prepared.hits, start=1)]
        if answer is None:  # retrieve mode: every hit is a citation
            citations = sources
            answer = Answer("", "none", [])
        else:
            citations = [sources[n - 1] for n in answer.cited]
        grounding_started = time.perf_counter()
        grounding = self._grounding(prepared, answer)
        ground_ms = (time.perf_counter() - grounding_started) * 1000
        if unsupported := grounding.unsupported:
            answer.warnings.append(_unsupported_warning(unsupported))
        for citation in citations:
            if patterns := flagged(prepared.hits[citation.n - 1]):
                answer.warnings.append(
                    f"passage [{citation.n}] ({citation.filename or 'unknown'}) contains instruction-like text "
                    f"(possible prompt injection: {patterns}); it is quoted data, not instructions"
                )
        usage: dict[str, Any] = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "embedding_tokens": prepared.embedding_tokens,
        }
        llm_model = self.llm.model if answer.mode == "llm" and self.llm else None
        cost = self.settings.cost(llm_model, answer.prompt_tokens, answer.completion_tokens) + self.settings.cost(
            prepared.target.version.embedding_model, prepared.embedding_tokens, 0
        )
        usage["cost"] = round(cost, 8)
        latency = {
            "retrieve": round(prepared.retrieve_ms, 2),
            "generate": round(generate_ms, 2),
            "ground": round(ground_ms, 2),
            "total": round((time.perf_counter() - prepared.started) * 1000, 2),
        }
        model = llm_model
        result = QueryResult(
            "",
            prepared.target.collection.name,
            prepared.target.version.number,
            answer.text,
            answer.mode,
            citations,
            usage,
            latency,
            answer.warnings,
            model,
            sources,
            prepared.target.prompt[1],
            round(prepared.evidence.confidence, 4),
            prepared.evidence,
            grounding,
        )
        if request.record:
            result.query_id = new_id()
            row = dict(
                id=result.query_id,
                created_at=utcnow(),
                collection_id=prepared.target.collection.id,
                version_number=prepared.target.version.number,
                question=request.question,
                mode=request.mode,
                answer_mode=answer.mode,
                answer=answer.text,
                chunk_ids=[hit.chunk_id for hit in prepared.hits],
                cited_chunk_ids=[c.chunk_id for c in citations],
                usage=usage,
                latency_ms=latency,
                warnings=answer.warnings,
                model=model,
                prompt_revision=prepared.target.prompt[1],
                cost=usage["cost"],
                client=request.client,
                confidence=result.confidence,
                grounding_score=grounding.score,
                unsupported_sentences=len(grounding.unsupported),
            )
            self.query_log.submit(row)
        return result

    def _fallback(self, question: str, hits: Sequence[Hit], exc: BaseException) -> Answer:
        log.warning("LLM endpoint failed, answering extractively: %r", exc)
        answer = extractive_answer(question, hits)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        answer.warnings.insert(
            0,
            f"LLM endpoint failed ({type(exc).__name__}{': ' + reason if reason else ''}); "
            "answered extractively from the retrieved passages",
        )
        return answer

    # ---------------------------------------------------------------- public

    def query(self, request: QueryRequest) -> QueryResult:
        """Answer ``request`` in one piece."""
        prepared = self._prepare(request)
        started = time.perf_counter()
        answer: Answer | None = None
        if request.mode == "answer":
            answer = self._low_confidence(request.question, prepared)
            if answer is not None:
                pass  # declined before generating: nothing is sent to the LLM
            elif self.llm is None or not prepared.hits:
                answer = extractive_answer(request.question, prepared.hits)
            else:
                try:
                    answer = self.llm.answer(
                        self._prompt(prepared, request.question), self._history(prepared, request), prepared.hits
                    )
                    if evidence_model.is_sentinel(answer.text):
                        answer = self._sentinel(request.question, prepared, answer)
                    elif not answer.cited:
                        answer.warnings.append("the LLM answer cites none of the retrieved passages")
                except Exception as exc:  # timeouts, connection errors, 4xx/5xx of the endpoint
                    answer = self._fallback(request.question, prepared.hits, exc)
        return self._finish(request, prepared, answer, (time.perf_counter() - started) * 1000)

    def stream(self, request: QueryRequest) -> Iterator[tuple[str, Any]]:
        """Yield ("token", text) events while the answer is generated, then ("done", QueryResult)."""
        prepared = self._prepare(request)
        started = time.perf_counter()
        if request.mode == "retrieve":
            yield "done", self._finish(request, prepared, None, 0.0)
            return
        declined = self._low_confidence(request.question, prepared)
        if declined is not None or self.llm is None or not prepared.hits:
            answer = declined or extractive_answer(request.question, prepared.hits)
            if answer.text:
                yield "token", answer.text
            yield "done", self._finish(request, prepared, answer, (time.perf_counter() - started) * 1000)
            return
        answer = yield from self._stream_llm(request, prepared)
        yield "done", self._finish(request, prepared, answer, (time.perf_counter() - started) * 1000)

    def _stream_llm(self, request: QueryRequest, prepared: _Prepared) -> Generator[tuple[str, Any], None, Answer]:
        """Stream the LLM's tokens (holding back a start that may be the sentinel); return its answer."""
        assert self.llm is not None  # stream() checked
        prompt = self._prompt(prepared, request.question)
        parts: list[str] = []
        sent = 0  # characters of ``parts`` sent: the start is held back while it may be the sentinel
        counts: dict[str, int] = {}
        try:
            for delta, reported in self.llm.stream(prompt, self._history(prepared, request)):
                counts.update(reported)
                if delta:
                    parts.append(delta)
                    so_far = "".join(parts)
                    if not evidence_model.could_become_sentinel(so_far):
                        yield "token", so_far[sent:]
                        sent = len(so_far)
            text = "".join(parts).strip()
            answer = Answer(
                text,
                "llm",
                cited_numbers(text, len(prepared.hits)),
                counts.get("prompt_tokens", 0),
                counts.get("completion_tokens", 0),
            )
            if not counts:
                answer.prompt_tokens = _estimate_tokens(prompt)
                answer.completion_tokens = _estimate_tokens(text)
                answer.warnings.append("the endpoint reported no token usage; counts are estimated")
            if evidence_model.is_sentinel(text):
                answer = self._sentinel(request.question, prepared, answer)
                yield "token", answer.text
            elif sent < len("".join(parts)):  # a short answer that began like the sentinel
                yield "token", "".join(parts)[sent:]
        except Exception as exc:
            answer = self._fallback(request.question, prepared.hits, exc)
            if sent:
                answer.warnings.append("the streamed text was cut off; the final answer replaces it")
        return answer


def _unsupported_warning(unsupported: Sequence[SentenceSupport]) -> str:
    details = []
    for sentence in unsupported[:3]:
        quoted = sentence.text if len(sentence.text) <= 120 else sentence.text[:117] + "..."
        missing = (
            f" (not in the cited passages: {', '.join(sentence.unsupported_tokens)})"
            if sentence.unsupported_tokens
            else ""
        )
        details.append(f'"{quoted}"{missing}')
    more = f" and {len(unsupported) - 3} more" if len(unsupported) > 3 else ""
    return (
        f"{len(unsupported)} answer sentence(s) not supported by the passages they cite: " + "; ".join(details) + more
    )


def _estimate_tokens(text: str) -> int:
    import tiktoken

    return len(tiktoken.get_encoding("cl100k_base").encode(text))
