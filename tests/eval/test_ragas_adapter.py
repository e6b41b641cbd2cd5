"""RAGAS through the adapter: LLM-free metrics always, judge metrics through a local fake judge."""

from __future__ import annotations

import pytest

from core.embedding import Embedder
from core.settings import JudgeSettings
from eval.ragas_adapter import RagasScorer, Sample
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
    [scores] = RagasScorer(JudgeSettings(), embedder).score([SAMPLE])
    assert 0.4 < scores["context_precision"] <= 1.0  # type: ignore[operator]
    assert scores["context_recall"] == pytest.approx(1.0)
    for metric in ("faithfulness", "answer_relevancy", "llm_context_precision", "llm_context_recall"):
        assert scores[metric] is None, f"{metric} must be 'not measured' without a judge, never 0 or 1"


def test_reference_documents_give_id_based_scores(embedder: Embedder) -> None:
    sample = Sample(**{**SAMPLE.__dict__, "reference_contexts": []})
    [scores] = RagasScorer(JudgeSettings(), embedder).score([sample])
    assert scores["context_precision"] == pytest.approx(0.5) and scores["context_recall"] == pytest.approx(1.0)


def test_nothing_retrieved_is_not_measured(embedder: Embedder) -> None:
    sample = Sample(**{**SAMPLE.__dict__, "retrieved_contexts": [], "retrieved_documents": []})
    [scores] = RagasScorer(JudgeSettings(), embedder).score([sample])
    assert all(value is None for value in scores.values())


def test_judge_metrics_run_through_ragas(embedder: Embedder) -> None:
    with running_fake_llm() as judge:
        scorer = RagasScorer(JudgeSettings(base_url=judge.base_url, model="judge-1"), embedder)
        [scores] = scorer.score([SAMPLE])
        prompts = [r["messages"][-1]["content"] for r in judge.requests]
    assert scorer.judge_model == "judge-1"
    # One of the two answer statements ("made of chocolate") is not in the context.
    assert scores["faithfulness"] == pytest.approx(0.5)
    assert scores["llm_context_recall"] == pytest.approx(1.0)
    assert 0.0 < scores["llm_context_precision"] <= 1.0  # type: ignore[operator]
    assert 0.0 < scores["answer_relevancy"] <= 1.0  # type: ignore[operator]
    assert any("faithfulness of a series of statements" in p for p in prompts)


def test_a_failing_judge_leaves_scores_unmeasured(embedder: Embedder) -> None:
    with running_fake_llm() as judge:
        [scores] = RagasScorer(JudgeSettings(base_url=judge.base_url, model="broken"), embedder).score([SAMPLE])
    assert scores["faithfulness"] is None and scores["context_precision"] is not None
