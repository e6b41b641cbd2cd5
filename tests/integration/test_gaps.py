"""Issue 18 for owners, through HTTP against real processes: knowledge gaps in ``/gaps`` and in the report
e-mail received by a real SMTP server, a gap turned into an ``answerable: false`` golden line, an evaluation
judged by the answering LLM (no judge configured) that reports abstention and groundedness metrics.

The LLM is the deterministic fake of ``tests/fakellm.py`` as ``inventing``: every answer it writes carries
one sentence its passages do not hold, so the report has possibly unsupported answers to list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.fakellm import FakeLLMServer, running_fake_llm
from tests.integration.conftest import Mailbox, Stack, run_stack

pytestmark = pytest.mark.integration

DOCUMENTS = {
    "vacation.txt": "Vacation policy. Every employee gets 25 paid vacation days per calendar year. Unused vacation "
    "days carry over until the end of March of the following year. Vacation requests go to your manager at "
    "least two weeks before the first day off.",
    "expenses.txt": "Expense policy. Travel expenses are reimbursed within 30 days when the receipts are uploaded "
    "to the expense tool. Hotel costs are covered up to 180 euros per night. Meals during business trips are "
    "covered up to 60 euros per day.",
}
PASSWORD = [
    "How do I reset my VPN password?",
    "I forgot my VPN password, how can I reset it?",
    "What is the procedure to reset a VPN password?",
]
PETS = ["Can I bring my dog to the office?", "Are pets allowed in the office?"]
ANSWERABLE = "How many paid vacation days does every employee get per year?"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with running_fake_llm() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, chroma_server: str, mailbox: tuple[Mailbox, int], llm: FakeLLMServer
) -> Iterator[Stack]:
    env = {
        "RAGKEEP_REDIS_URL": REDIS_URL,
        "RAGKEEP_LLM__BASE_URL": llm.base_url,
        "RAGKEEP_LLM__MODEL": "inventing",  # no RAGKEEP_JUDGE__*: the answering LLM judges
        "RAGKEEP_SMTP__HOST": "127.0.0.1",
        "RAGKEEP_SMTP__PORT": str(mailbox[1]),
        "RAGKEEP_EVAL__BOOTSTRAP_SAMPLES": "200",
    }
    yield from run_stack(tmp_path_factory.mktemp("gaps-stack"), chroma_server, env)


def _query(s: Stack, question: str) -> dict[str, Any]:
    response = s.http.post("/query", json={"collection": "handbook", "question": question})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def handbook(stack: Stack) -> dict[str, dict[str, Any]]:
    """Collection `handbook`, live, asked the gap questions and one it answers; their answers by question."""
    s = stack
    created = s.http.post("/collections", json={"name": "handbook", "owners": ["owner@example.com"]})
    assert created.status_code == 201, created.text
    job = s.upload("handbook", [(name, text.encode()) for name, text in DOCUMENTS.items()])
    assert s.wait_job(job["job_id"])["status"] == "succeeded"
    assert s.wait_live("handbook", 1)["state"] == "live"
    return {q: _query(s, q) for q in [*PASSWORD, *PETS, ANSWERABLE]}


def test_gaps_group_what_the_knowledge_base_does_not_answer(stack: Stack, handbook: dict[str, dict[str, Any]]) -> None:
    assert all(handbook[q]["answer_mode"] == "abstained" for q in PASSWORD + PETS), {
        q: (r["answer_mode"], r["confidence"]) for q, r in handbook.items()
    }
    assert handbook[ANSWERABLE]["answer_mode"] == "llm"

    response = stack.http.get("/collections/handbook/gaps")
    assert response.status_code == 200, response.text
    gaps = response.json()
    assert gaps["questions"] == 5 and gaps["declined"] == 5
    assert [c["count"] for c in gaps["clusters"]] == [3, 2], gaps
    password, pets = gaps["clusters"]
    assert {e["question"] for e in password["examples"]} == set(PASSWORD)
    assert {e["question"] for e in pets["examples"]} == set(PETS)
    assert {e["query_id"] for e in password["examples"]} == {handbook[q]["query_id"] for q in PASSWORD}
    assert set(password["closest_documents"]) <= set(DOCUMENTS) and password["closest_documents"]

    past = stack.http.get("/collections/handbook/gaps", params={"from": "2020-01-01T00:00:00", "to": "2020-02-01"})
    assert past.status_code == 200 and past.json()["questions"] == 0 and past.json()["clusters"] == []
    backwards = stack.http.get("/collections/handbook/gaps", params={"from": "2021-01-01", "to": "2020-01-01"})
    assert backwards.status_code == 422 and "before" in backwards.json()["detail"]
    assert stack.http.get("/collections/nowhere/gaps").status_code == 404


def test_readers_of_the_collection_see_its_gaps_and_no_one_else(stack: Stack, handbook: dict[str, Any]) -> None:
    keys = {}
    for name, collections in (("reader", ["handbook"]), ("other", ["elsewhere"])):
        created = stack.http.post("/keys", json={"name": name, "role": "reader", "collections": collections})
        assert created.status_code == 201, created.text
        keys[name] = {"Authorization": f"Bearer {created.json()['key']}"}
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        assert http.get("/collections/handbook/gaps", headers=keys["reader"]).json()["questions"] == 5
        hidden = http.get("/collections/handbook/gaps", headers=keys["other"])
        assert hidden.status_code == 404 and hidden.json()["detail"] == "collection 'handbook' does not exist"
        assert http.get("/collections/handbook/gaps").status_code == 401


def test_a_gap_becomes_an_unanswerable_golden_line_and_the_llm_judges_the_evaluation(
    stack: Stack, handbook: dict[str, dict[str, Any]], llm: FakeLLMServer
) -> None:
    s = stack
    golden = [{"question": ANSWERABLE, "reference_answer": "25 paid vacation days per year."}]
    uploaded = s.http.post("/collections/handbook/goldensets", files={"file": ("g.jsonl", json.dumps(golden[0]))})
    assert uploaded.status_code == 201, uploaded.text
    gap_query = handbook[PASSWORD[0]]["query_id"]
    refused = s.http.post("/feedback", json={"query_id": gap_query, "rating": "down"})
    assert refused.status_code == 201
    without = s.http.post(
        "/collections/handbook/goldensets/from-feedback", json={"feedback_ids": [refused.json()["id"]]}
    )
    assert without.status_code == 422 and "answerable: false" in without.json()["detail"]
    feedback = s.http.post("/feedback", json={"query_id": gap_query, "rating": "down", "answerable": False})
    assert feedback.status_code == 201 and feedback.json()["answerable"] is False
    grown = s.http.post(
        "/collections/handbook/goldensets/from-feedback", json={"feedback_ids": [feedback.json()["id"]]}
    )
    assert grown.status_code == 201 and grown.json()["revision"] == 2 and grown.json()["item_count"] == 2

    accepted = s.http.post("/collections/handbook/versions/1/evaluations")
    assert accepted.status_code == 202, accepted.text
    assert s.wait_job(accepted.json()["job_id"])["status"] == "succeeded"
    run = s.http.get(f"/evaluations/{accepted.json()['evaluation_id']}").json()

    host = urlsplit(llm.base_url).netloc
    assert run["judge_model"] == "inventing" and run["judge_host"] == host and run["judge"] == f"inventing at {host}"
    assert run["metrics"]["faithfulness"]["measured"] == 1, "the answering LLM judged the answered question"
    rows = {r["question"]: r for r in run["results"]}
    assert rows[PASSWORD[0]]["answerable"] is False and rows[PASSWORD[0]]["answer_mode"] == "abstained"
    assert rows[ANSWERABLE]["answer_mode"] == "llm" and rows[ANSWERABLE]["unsupported_sentences"] == 1
    metrics = run["metrics"]
    assert metrics["abstention_recall"]["mean"] == 1.0 and metrics["abstention_precision"]["mean"] == 1.0
    assert metrics["false_answer_rate"]["mean"] == 0.0 and metrics["unsupported_answer_rate"]["mean"] == 1.0
    assert run["calibration"]["threshold"] is None and "needs at least" in run["calibration"]["reason"]

    compared = s.http.get(
        "/collections/handbook/evaluations/compare", params={"base": run["id"], "candidate": run["id"]}
    ).json()
    assert {"abstention_precision", "abstention_recall", "unsupported_answer_rate"} <= {
        d["metric"] for d in compared["deltas"]
    }


def test_the_report_email_lists_the_gaps_and_the_unsupported_answers(
    stack: Stack, handbook: dict[str, dict[str, Any]], mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    before = len(box.messages)
    sent = stack.wait_job(stack.http.post("/collections/handbook/reports/send").json()["job_id"])
    assert sent["status"] == "succeeded", sent
    assert len(box.messages) == before + 1
    parts = {p.get_content_type(): p for p in box.messages[-1].walk() if not p.is_multipart()}
    text, html = parts["text/plain"].get_content(), parts["text/html"].get_content()
    assert "WHAT YOUR USERS ASKED THAT THE KNOWLEDGE BASE DOES NOT ANSWER" in text
    assert "What your users asked that the knowledge base does not answer" in html
    assert "- asked 3 times:" in text and "- asked 2 times:" in text
    for rendering in (text, html):
        assert all(q in rendering for q in PASSWORD + PETS)
        assert ANSWERABLE in rendering, "its LLM answer invented a sentence: listed as possibly unsupported"
        assert "1987" in rendering
    assert "POSSIBLY UNSUPPORTED ANSWERS" in text and "Possibly unsupported answers" in html
