"""RAGAS scoring. The only module that imports ``ragas``.

Without a judge LLM only the LLM-free metrics run: string-similarity context
precision/recall against reference contexts, or ID-based precision/recall against
reference documents (the retrieved chunks' filenames). With a judge endpoint
(``RAGKEEP_JUDGE__*``) faithfulness, answer relevancy and the LLM context
precision/recall run too, through RAGAS's own prompts. A metric that cannot be
computed for a question is ``None`` ("not measured"), never 0 or 1.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import core  # noqa: F401  (RAGAS_DO_NOT_TRACK before ragas is imported)
from core.embedding import Embedder
from core.settings import JudgeSettings

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


def _value(result: Any) -> float | None:
    value = getattr(result, "value", result)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else max(0.0, min(1.0, number))


def _ragas_embeddings(embedder: Embedder) -> Any:
    """ragas' embedding interface over ragkeep's local model (ragas would default to OpenAI's)."""
    from ragas.embeddings.base import BaseRagasEmbedding

    class LocalEmbeddings(BaseRagasEmbedding):  # type: ignore[misc]
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
        llm = llm_factory(judge.model or "", client=client)
        return {
            "llm_context_precision": ContextPrecisionWithReference(llm=llm),
            "llm_context_recall": ContextRecall(llm=llm),
            "faithfulness": Faithfulness(llm=llm),
            "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=_ragas_embeddings(embedder)),
        }

    async def _non_llm(self, sample: Sample, piece_chars: int) -> dict[str, float | None]:
        from ragas.dataset_schema import SingleTurnSample

        scores: dict[str, float | None] = {"context_precision": None, "context_recall": None}
        if not sample.retrieved_contexts:
            return scores
        if sample.reference_contexts:
            row = SingleTurnSample(
                user_input=sample.question,
                retrieved_contexts=[_normalized(c) for c in sample.retrieved_contexts],
                reference_contexts=reference_pieces(sample.reference_contexts, piece_chars),
            )
            scores["context_precision"] = _value(await self._string_precision.single_turn_ascore(row))
            scores["context_recall"] = _value(await self._string_recall.single_turn_ascore(row))
        elif sample.reference_documents:
            row = SingleTurnSample(
                retrieved_context_ids=sample.retrieved_documents, reference_context_ids=sample.reference_documents
            )
            scores["context_precision"] = _value(await self._id_precision.single_turn_ascore(row))
            scores["context_recall"] = _value(await self._id_recall.single_turn_ascore(row))
        return scores

    async def _judged(self, name: str, call: Callable[[], Awaitable[Any]], gate: asyncio.Semaphore) -> float | None:
        async with gate:
            try:
                return _value(await call())
            except Exception as exc:  # a judge failure makes this one score unmeasured, not the run
                log.warning("judge metric %s failed: %r", name, exc)
                return None

    async def _llm(self, sample: Sample, gate: asyncio.Semaphore) -> dict[str, float | None]:
        scores: dict[str, float | None] = dict.fromkeys(LLM_METRICS)
        if not self._llm_metrics or not sample.retrieved_contexts:
            return scores
        m = self._llm_metrics
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
        if sample.answer:
            calls["faithfulness"] = lambda: m["faithfulness"].ascore(
                user_input=sample.question, response=sample.answer, retrieved_contexts=sample.retrieved_contexts
            )
            calls["answer_relevancy"] = lambda: m["answer_relevancy"].ascore(
                user_input=sample.question, response=sample.answer
            )
        names = list(calls)
        values = await asyncio.gather(*(self._judged(n, calls[n], gate) for n in names))
        scores.update(zip(names, values, strict=True))
        return scores

    async def _score_all(self, samples: Sequence[Sample], piece_chars: int) -> list[dict[str, float | None]]:
        gate = asyncio.Semaphore(JUDGE_CONCURRENCY)
        results = []
        for sample in samples:
            scores = await self._non_llm(sample, piece_chars)
            scores.update(await self._llm(sample, gate))
            results.append(scores)
        return results

    def score(self, samples: Sequence[Sample], piece_chars: int = 1000) -> list[dict[str, float | None]]:
        """Per sample: every metric name -> score in [0, 1], or None when not measured.

        ``piece_chars`` is the chunk size of the version under test (reference passages
        are cut to it for the string-similarity metrics).
        """
        return asyncio.run(self._score_all(samples, piece_chars))
