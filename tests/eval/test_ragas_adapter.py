"""RAGAS through the adapter: LLM-free metrics always, judge metrics through a local fake judge.

Every metric that is not measured carries its reason; the fake judge fails in each way a
real one does (timeout, cut-off output, prose instead of JSON, a server error).
"""

from __future__ import annotations

import pytest

from core.embedding import Embedder
from core.settings import JudgeSettings
from eval.ragas_adapter import LLM_METRICS, RagasScorer, Sample
from tests.fakellm import running_fake_llm

CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair."
SAMPLE = Sample(
    question="When was the Eiffel Tower completed?",
    answer="The Eiffel Tower was completed in 1889. It is made of chocolate.",
    retrieved_contexts=[CONTEXT, "Bananas are yellow fruit rich in potassium."],
    retrieved_documents=["eiffel.txt", "bananas.txt"],
    reference_answer="It was completed in 1889.",
    reference_contexts=[CONTEXT],
    reference_documents=["eiffel.txt"],
)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_without_a_judge_only_llm_free_metrics_are_measured(embedder: Embedder) -> None:
    [scored] = RagasScorer(JudgeSettings(), embedder).score([SAMPLE])
    scores = scored.scores
    assert 0.4 < scores["context_precision"] <= 1.0  # type: ignore[operator]
    assert scores["context_recall"] == pytest.approx(1.0)
    for metric in LLM_METRICS:
        assert scores[metric] is None, f"{metric} must be 'not measured' without a judge, never 0 or 1"
    assert scored.not_measured == dict.fromkeys(LLM_METRICS, "no_judge")
    assert scored.judge_calls == 0


def test_reference_documents_give_id_based_scores(embedder: Embedder) -> None:
    sample = Sample(**{**SAMPLE.__dict__, "reference_contexts": []})
    [scored] = RagasScorer(JudgeSettings(), embedder).score([sample])
    scores = scored.scores
    assert scores["context_precision"] == pytest.approx(0.5) and scores["context_recall"] == pytest.approx(1.0)


def test_nothing_retrieved_is_not_measured(embedder: Embedder) -> None:
    sample = Sample(**{**SAMPLE.__dict__, "retrieved_contexts": [], "retrieved_documents": []})
    [scored] = RagasScorer(JudgeSettings(), embedder).score([sample])
    assert all(value is None for value in scored.scores.values())
    assert scored.not_measured == {"context_precision": "no_contexts", "context_recall": "no_contexts"} | dict.fromkeys(
        LLM_METRICS, "no_judge"
    )


def test_without_references_the_context_metrics_say_so(embedder: Embedder) -> None:
    sample = Sample(**{**SAMPLE.__dict__, "reference_contexts": [], "reference_documents": []})
    [scored] = RagasScorer(JudgeSettings(), embedder).score([sample])
    assert scored.not_measured["context_precision"] == scored.not_measured["context_recall"] == "no_reference"


def test_judge_metrics_run_through_ragas(embedder: Embedder) -> None:
    with running_fake_llm() as judge:
        scorer = RagasScorer(JudgeSettings(base_url=judge.base_url, model="judge-1"), embedder)
        [scored] = scorer.score([SAMPLE])
        prompts = [r["messages"][-1]["content"] for r in judge.requests]
        sent = judge.requests
    scores = scored.scores
    assert scorer.judge_model == "judge-1"
    assert scored.not_measured == {} and scored.judge_retries == 0
    # context precision asks once per passage (2), recall once, faithfulness twice (statements, then
    # verdicts), answer relevancy three times (its strictness): every request is counted.
    assert scored.judge_calls == len(sent) == 8
    assert {r["max_tokens"] for r in sent} == {4096}, "RAGKEEP_JUDGE__MAX_TOKENS reaches every judge call"
    # One of the two answer statements ("made of chocolate") is not in the context.
    assert scores["faithfulness"] == pytest.approx(0.5)
    assert scores["llm_context_recall"] == pytest.approx(1.0)
    assert 0.0 < scores["llm_context_precision"] <= 1.0  # type: ignore[operator]
    assert 0.0 < scores["answer_relevancy"] <= 1.0  # type: ignore[operator]
    assert any("faithfulness of a series of statements" in p for p in prompts)


def _judged_by(model: str, embedder: Embedder, **settings: float) -> tuple[dict[str, str], int, int, int]:
    """Score SAMPLE with the fake judge answering as ``model``: reasons, calls, retries, requests received."""
    with running_fake_llm() as judge:
        scorer = RagasScorer(JudgeSettings(base_url=judge.base_url, model=model, **settings), embedder)  # type: ignore[arg-type]
        [scored] = scorer.score([SAMPLE])
        received = len(judge.requests)
    assert scored.scores["context_precision"] is not None, "a judge failure leaves the LLM-free metrics alone"
    assert all(scored.scores[m] is None for m in LLM_METRICS)
    return scored.not_measured, scored.judge_calls, scored.judge_retries, received


def test_a_judge_answer_cut_off_at_max_tokens_is_recorded_as_truncated(embedder: Embedder) -> None:
    reasons, calls, retries, received = _judged_by("truncating", embedder)
    assert reasons == dict.fromkeys(LLM_METRICS, "judge_truncated")
    assert calls == received >= 4 and retries == 0, "a cut-off answer is not asked again"


def test_a_judge_answer_that_does_not_parse_is_retried_a_bounded_number_of_times(embedder: Embedder) -> None:
    reasons, calls, retries, received = _judged_by("babbling", embedder, parse_retries=2)
    assert reasons == dict.fromkeys(LLM_METRICS, "judge_unparsable")
    assert calls == received and calls % 3 == 0, "every request failing to parse was asked 1 + 2 times"
    assert retries == calls // 3 * 2 >= 4 * 2


def test_a_judge_timeout_is_recorded_as_a_timeout(embedder: Embedder) -> None:
    reasons, *_ = _judged_by("slow", embedder, timeout_s=0.5)
    assert reasons == dict.fromkeys(LLM_METRICS, "judge_timeout")


def test_a_judge_server_error_is_recorded_with_its_class(embedder: Embedder) -> None:
    reasons, *_ = _judged_by("broken", embedder)
    assert reasons == dict.fromkeys(LLM_METRICS, "judge_error:InternalServerError")
