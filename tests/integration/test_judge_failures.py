"""A failing judge, end to end: the reasons reach the evaluation API, the stored report and the owners' e-mail.

The judge is the deterministic fake (``tests/fakellm.py``) answering as ``truncating``: every
answer is cut off with ``finish_reason: "length"``, as a real judge's is when its completion
limit is too small for RAGAS's JSON. Each failure mode's exact reason is tested against the
adapter in ``tests/eval/test_ragas_adapter.py``; this test follows one of them through the
worker, the catalog, the API and SMTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from eval.ragas_adapter import LLM_METRICS
from tests.fakellm import FakeLLMServer, running_fake_llm
from tests.integration.conftest import Mailbox, Stack, run_stack

pytestmark = pytest.mark.integration

DOCUMENTS = {
    "leave.txt": "Annual leave.\n\nEvery employee receives 25 days of paid annual leave per calendar year.",
    "expenses.txt": "Travel.\n\nTrain travel is reimbursed in second class. Flights need a director's approval.",
    "security.txt": "Laptops.\n\nA lost laptop must be reported to the IT help desk within 24 hours.",
}
GOLDEN = [
    {"question": "How many days of annual leave?", "reference_answer": "25 days per year."},
    {"question": "Which class of train travel is reimbursed?", "reference_answer": "Second class."},
    {"question": "When must a lost laptop be reported?", "reference_answer": "Within 24 hours."},
]


@pytest.fixture(scope="module")
def judge() -> Iterator[FakeLLMServer]:
    with running_fake_llm() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, chroma_server: str, judge: FakeLLMServer, mailbox: tuple[Mailbox, int]
) -> Iterator[Stack]:
    env = {
        "RAGKEEP_JUDGE__BASE_URL": judge.base_url,
        "RAGKEEP_JUDGE__MODEL": "truncating",
        "RAGKEEP_SMTP__HOST": "127.0.0.1",
        "RAGKEEP_SMTP__PORT": str(mailbox[1]),
        "RAGKEEP_EVAL__BOOTSTRAP_SAMPLES": "200",
    }
    yield from run_stack(tmp_path_factory.mktemp("judge-failures"), chroma_server, env)


def test_a_judge_cut_off_on_every_question_is_reported_with_its_reason(
    stack: Stack, judge: FakeLLMServer, mailbox: tuple[Mailbox, int]
) -> None:
    s = stack
    assert s.http.post("/collections", json={"name": "handbook", "owners": ["owner@example.com"]}).status_code == 201
    job = s.upload("handbook", [(name, text.encode()) for name, text in DOCUMENTS.items()])
    assert s.wait_job(job["job_id"])["status"] == "succeeded"
    s.wait_live("handbook", 1)
    golden = "\n".join(json.dumps(item) for item in GOLDEN)
    assert s.http.post("/collections/handbook/goldensets", files={"file": ("g.jsonl", golden)}).status_code == 201

    accepted = s.http.post("/collections/handbook/versions/1/evaluations")
    assert s.wait_job(accepted.json()["job_id"])["status"] == "succeeded"
    run = s.http.get(f"/evaluations/{accepted.json()['evaluation_id']}").json()

    assert run["status"] == "succeeded" and run["judge_model"] == "truncating"
    for metric in LLM_METRICS:
        assert run["metrics"][metric] == {
            "mean": None,
            "ci_low": None,
            "ci_high": None,
            "measured": 0,
            "not_measured": 3,
            "not_measured_reasons": {"judge_truncated": 3},
        }
    assert run["metrics"]["context_precision"]["not_measured_reasons"] == {"no_reference": 3}
    assert all(row["not_measured"]["faithfulness"] == "judge_truncated" for row in run["results"])
    assert run["judge_calls"] == len(judge.requests) and run["judge_retries"] == 0
    [warning] = run["warnings"]
    assert warning.startswith("the judge truncating failed on every judged question (3 of 3)")
    assert "faithfulness: judge output truncated on 3 of 3" in warning

    scraped = s.http.get("/metrics").text
    labels = 'collection="handbook",metric="faithfulness",reason="judge_truncated",version="1"'
    assert f"ragkeep_eval_not_measured{{{labels}}} 3.0" in scraped, "operators can alert on a failing judge"

    box, _ = mailbox
    sent = s.wait_job(s.http.post("/collections/handbook/reports/send").json()["job_id"])
    assert sent["status"] == "succeeded", sent
    message = box.messages[-1]
    assert "judge failed on every question" in message["Subject"]
    parts = {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}
    text, html = parts["text/plain"].get_content(), parts["text/html"].get_content()
    assert "WARNING: the judge truncating failed on every judged question (3 of 3)" in text
    assert "- faithfulness: not measured — judge output truncated on 3 of 3" in text
    assert "- answer_relevancy: not measured — judge output truncated on 3 of 3" in text
    assert "3: judge output truncated on 3 of 3" in html and "failed on every judged question" in html
