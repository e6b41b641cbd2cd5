"""RAGAS scoring. The only module that imports ``ragas``.

Without a judge LLM only the LLM-free metrics run: string-similarity context
precision/recall against reference contexts, or ID-based precision/recall against
reference documents (the retrieved chunks' filenames). With a judge endpoint
(``RAGKEEP_JUDGE__*``) faithfulness, answer relevancy and the LLM context
precision/recall run too, through RAGAS's own prompts; without one the answering LLM
(``RAGKEEP_LLM__*``) judges (``Settings.resolved_judge``). A metric that cannot be
computed for a question is ``None`` ("not measured"), never 0 or 1, and carries the
reason (``eval.unmeasured``): no judge, nothing to judge, or how the judge failed
(timeout, output cut off at ``max_tokens``, output that did not parse after the bounded
re-asks, NaN from RAGAS, or another error, named by its class).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import core  # noqa: F401  (RAGAS_DO_NOT_TRACK before ragas is imported)
from core.embedding import Embedder
from core.settings import JudgeSettings
from eval import unmeasured

log = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _normalized(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def reference_pieces(contexts: Sequence[str], size: int) -> list[str]:
    """Reference passages cut at sentence ends into pieces of about ``size`` characters, normalised.

    RAGAS's LLM-free context metrics compare strings by Levenshtein similarity: a whole
    2,500-character reference page never resembles a 1,000-character chunk, so the
    references are cut to the chunk size of the version under test. Whitespace and case
    are normalised because PDF extractors disagree on them.
    """
    pieces: list[str] = []
    for context in contexts:
        current = ""
        for sentence in _SENTENCE_END.split(_normalized(context)):
            if current and len(current) + len(sentence) > size:
                pieces.append(current)
                current = ""
            current = f"{current} {sentence}".strip()
        if current:
            pieces.append(current)
    return pieces


LLM_METRICS = ("llm_context_precision", "llm_context_recall", "faithfulness", "answer_relevancy")
JUDGE_CONCURRENCY = 4


@dataclass(frozen=True)
class Sample:
    question: str
    answer: str
    retrieved_contexts: list[str]
    retrieved_documents: list[str]
    reference_answer: str
    reference_contexts: list[str]
    reference_documents: list[str]


def _value(result: Any) -> tuple[float | None, str | None]:
    """A score clipped to [0, 1], or None with the reason (``nan``)."""
    value = getattr(result, "value", result)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, unmeasured.NAN
    if math.isnan(number):
        return None, unmeasured.NAN
    return max(0.0, min(1.0, number)), None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and the attempts instructor recorded before giving up."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend(a.exception for a in getattr(current, "failed_attempts", None) or [])
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def failure_reason(exc: BaseException) -> str:
    """The reason code for a judge call that raised ``exc`` (see ``eval.unmeasured``)."""
    import httpx
    import openai
    import pydantic
    from instructor.core.exceptions import IncompleteOutputException, InstructorError, ResponseParsingError

    chain = _chain(exc)
    if any(isinstance(e, IncompleteOutputException) for e in chain):
        return unmeasured.JUDGE_TRUNCATED
    if any(isinstance(e, openai.APITimeoutError | httpx.TimeoutException | TimeoutError) for e in chain):
        return unmeasured.JUDGE_TIMEOUT
    if any(isinstance(e, pydantic.ValidationError | json.JSONDecodeError | ResponseParsingError) for e in chain):
        return unmeasured.JUDGE_UNPARSABLE
    # Instructor wraps API errors in its retry exception: the first error it wraps names the cause
    # (openai's InternalServerError, not the httpx error openai raised it from).
    cause = next((e for e in chain if not isinstance(e, InstructorError)), chain[0])
    return f"{unmeasured.JUDGE_ERROR}:{type(cause).__name__}"


@dataclass
class _Tally:
    """Judge requests and re-asks of one metric on one question (instructor's hooks count them)."""

    calls: int = 0
    retries: int = 0


_TALLY: contextvars.ContextVar[_Tally | None] = contextvars.ContextVar("judge_tally", default=None)


def _on_request(*_: Any, **__: Any) -> None:
    tally = _TALLY.get()
    if tally is not None:
        tally.calls += 1


def _on_parse_error(_error: Exception, is_last_attempt: bool = True, **__: Any) -> None:
    tally = _TALLY.get()
    if tally is not None and not is_last_attempt:
        tally.retries += 1


@dataclass(frozen=True)
class Scored:
    """One sample's scores: metric -> score in [0, 1] or None, and for each None its reason code."""

    scores: dict[str, float | None]
    not_measured: dict[str, str] = field(default_factory=dict)
    judge_calls: int = 0
    judge_retries: int = 0


def _ragas_embeddings(embedder: Embedder) -> Any:
    """ragas' embedding interface over ragkeep's local model (ragas would default to OpenAI's)."""
    from ragas.embeddings.base import BaseRagasEmbedding

    class LocalEmbeddings(BaseRagasEmbedding):
        def embed_text(self, text: str, **_: Any) -> list[float]:
            return [float(x) for x in embedder.embed([text])[0]]

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embed_text(text, **kwargs)

        def embed_texts(self, texts: list[str], **_: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in embedder.embed(texts)]

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embed_texts(texts, **kwargs)

    return LocalEmbeddings()


class RagasScorer:
    """Scores samples with every metric that can run with the configuration at hand."""

    def __init__(self, judge: JudgeSettings, embedder: Embedder) -> None:
        from ragas.metrics._context_precision import IDBasedContextPrecision, NonLLMContextPrecisionWithReference
        from ragas.metrics._context_recall import IDBasedContextRecall, NonLLMContextRecall

        self.judge = judge
        self._string_precision = NonLLMContextPrecisionWithReference()
        self._string_recall = NonLLMContextRecall()
        self._id_precision = IDBasedContextPrecision()
        self._id_recall = IDBasedContextRecall()
        self._llm_metrics: dict[str, Any] = {}
        if judge.configured:
            self._llm_metrics = self._judge_metrics(judge, embedder)

    @property
    def judge_model(self) -> str | None:
        return self.judge.model if self._llm_metrics else None

    @property
    def judge_host(self) -> str | None:
        """Host (and port) of the judge's endpoint, without credentials or path; None without a judge."""
        if not self._llm_metrics or not self.judge.base_url:
            return None
        parts = urlsplit(self.judge.base_url)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname

    @staticmethod
    def _judge_metrics(judge: JudgeSettings, embedder: Embedder) -> dict[str, Any]:
        import openai
        from ragas.llms import llm_factory
        from ragas.metrics.collections import (
            AnswerRelevancy,
            ContextPrecisionWithReference,
            ContextRecall,
            Faithfulness,
        )

        client = openai.AsyncOpenAI(
            base_url=judge.base_url, api_key=judge.api_key or "unused", timeout=judge.timeout_s, max_retries=1
        )
        # max_tokens and max_retries go to each instructor create(); RAGAS's default of 1,024 tokens cuts off
        # its own structured outputs on long answers, and instructor's default of 3 re-asks is unbounded cost.
        llm = llm_factory(
            judge.model or "", client=client, max_tokens=judge.max_tokens, max_retries=judge.parse_retries
        )
        hooks: Any = llm  # InstructorLLM: its instructor client takes hooks
        hooks.client.on("completion:kwargs", _on_request)
        hooks.client.on("parse:error", _on_parse_error)
        return {
            "llm_context_precision": ContextPrecisionWithReference(llm=llm),
            "llm_context_recall": ContextRecall(llm=llm),
            "faithfulness": Faithfulness(llm=llm),
            "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=_ragas_embeddings(embedder)),
        }

    async def _non_llm(self, sample: Sample, piece_chars: int) -> Scored:
        from ragas.dataset_schema import SingleTurnSample

        metrics = ("context_precision", "context_recall")
        if not sample.retrieved_contexts:
            return Scored(dict.fromkeys(metrics), dict.fromkeys(metrics, unmeasured.NO_CONTEXTS))
        if sample.reference_contexts:
            row = SingleTurnSample(
                user_input=sample.question,
                retrieved_contexts=[_normalized(c) for c in sample.retrieved_contexts],
                reference_contexts=reference_pieces(sample.reference_contexts, piece_chars),
            )
            precision: Any = self._string_precision
            recall: Any = self._string_recall
        elif sample.reference_documents:
            row = SingleTurnSample(
                retrieved_context_ids=sample.retrieved_documents, reference_context_ids=sample.reference_documents
            )
            precision, recall = self._id_precision, self._id_recall
        else:
            return Scored(dict.fromkeys(metrics), dict.fromkeys(metrics, unmeasured.NO_REFERENCE))
        scores: dict[str, float | None] = {}
        reasons: dict[str, str] = {}
        for name, metric in zip(metrics, (precision, recall), strict=True):
            scores[name], reason = _value(await metric.single_turn_ascore(row))
            if reason:
                reasons[name] = reason
        return Scored(scores, reasons)

    async def _judged(
        self, name: str, call: Callable[[], Awaitable[Any]], gate: asyncio.Semaphore
    ) -> tuple[float | None, str | None, _Tally]:
        tally = _Tally()
        _TALLY.set(tally)  # this coroutine runs as its own task (gather), so the tally is its own
        async with gate:
            try:
                value, reason = _value(await call())
                return value, reason, tally
            except Exception as exc:  # a judge failure makes this one score unmeasured, not the run
                reason = failure_reason(exc)
                log.warning("judge metric %s not measured (%s): %r", name, reason, exc)
                return None, reason, tally

    async def _llm(self, sample: Sample, gate: asyncio.Semaphore) -> Scored:
        scores: dict[str, float | None] = dict.fromkeys(LLM_METRICS)
        if not self._llm_metrics:
            return Scored(scores, dict.fromkeys(LLM_METRICS, unmeasured.NO_JUDGE))
        if not sample.retrieved_contexts:
            return Scored(scores, dict.fromkeys(LLM_METRICS, unmeasured.NO_CONTEXTS))
        m = self._llm_metrics
        reasons: dict[str, str] = {}
        calls: dict[str, Callable[[], Awaitable[Any]]] = {}
        if sample.reference_answer:
            calls["llm_context_precision"] = lambda: m["llm_context_precision"].ascore(
                user_input=sample.question,
                reference=sample.reference_answer,
                retrieved_contexts=sample.retrieved_contexts,
            )
            calls["llm_context_recall"] = lambda: m["llm_context_recall"].ascore(
                user_input=sample.question,
                retrieved_contexts=sample.retrieved_contexts,
                reference=sample.reference_answer,
            )
        else:
            reasons.update(
                dict.fromkeys(("llm_context_precision", "llm_context_recall"), unmeasured.NO_REFERENCE_ANSWER)
            )
        if sample.answer:
            calls["faithfulness"] = lambda: m["faithfulness"].ascore(
                user_input=sample.question, response=sample.answer, retrieved_contexts=sample.retrieved_contexts
            )
            calls["answer_relevancy"] = lambda: m["answer_relevancy"].ascore(
                user_input=sample.question, response=sample.answer
            )
        else:
            reasons.update(dict.fromkeys(("faithfulness", "answer_relevancy"), unmeasured.NO_ANSWER))
        names = list(calls)
        results = await asyncio.gather(*(self._judged(n, calls[n], gate) for n in names))
        judge_calls = judge_retries = 0
        for name, (value, reason, tally) in zip(names, results, strict=True):
            scores[name] = value
            if reason:
                reasons[name] = reason
            judge_calls += tally.calls
            judge_retries += tally.retries
        return Scored(scores, reasons, judge_calls, judge_retries)

    async def _score_all(self, samples: Sequence[Sample], piece_chars: int) -> list[Scored]:
        gate = asyncio.Semaphore(JUDGE_CONCURRENCY)
        results = []
        for sample in samples:
            plain = await self._non_llm(sample, piece_chars)
            judged = await self._llm(sample, gate)
            results.append(
                Scored(
                    {**plain.scores, **judged.scores},
                    {**plain.not_measured, **judged.not_measured},
                    judged.judge_calls,
                    judged.judge_retries,
                )
            )
        return results

    def score(self, samples: Sequence[Sample], piece_chars: int = 1000) -> list[Scored]:
        """Per sample: every metric name -> score in [0, 1], or None with the reason it was not measured.

        ``piece_chars`` is the chunk size of the version under test (reference passages
        are cut to it for the string-similarity metrics).
        """
        return asyncio.run(self._score_all(samples, piece_chars))
