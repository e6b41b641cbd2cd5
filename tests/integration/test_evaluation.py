"""Golden sets, RAGAS evaluations, the promotion gate, and owner reports through a real SMTP server."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from core.settings import Settings
from tests.conftest import DATASETS, EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import ADMIN_KEY, REJECTED, Mailbox, Stack, run_stack
from tests.processes import BIN, child_env
from workers.app import create_celery
from workers.client import TaskClient
from workers.names import TaskName

pytestmark = pytest.mark.integration

SOLANA = DATASETS / "llamaindex-blockchain-solana"
SOLANA_PDF = (SOLANA / "source_files" / "BlockchainSolana.pdf").read_bytes()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, chroma_server: str, mailbox: tuple[Mailbox, int]
) -> Iterator[Stack]:
    env = {
        "RAGKEEP_REDIS_URL": REDIS_URL,
        "RAGKEEP_SMTP__HOST": "127.0.0.1",
        "RAGKEEP_SMTP__PORT": str(mailbox[1]),
        "RAGKEEP_SMTP__SENDER": "reports@ragkeep.test",
        "RAGKEEP_SMTP__RETRIES": "1",
        "RAGKEEP_SMTP__RETRY_DELAY_S": "0.5",
        "RAGKEEP_EVAL__BOOTSTRAP_SAMPLES": "500",
    }
    yield from run_stack(tmp_path_factory.mktemp("eval-stack"), chroma_server, env)


def _golden_jsonl(count: int) -> bytes:
    examples = json.loads((SOLANA / "rag_dataset.json").read_text())["examples"][:count]
    return "\n".join(
        json.dumps(
            {
                "question": e["query"],
                "reference_answer": e["reference_answer"],
                "reference_contexts": e["reference_contexts"],
            }
        )
        for e in examples
    ).encode()


@pytest.fixture(scope="module")
def solana(stack: Stack) -> Stack:
    s = stack
    assert (
        s.http.post(
            "/collections",
            json={
                "name": "solana",
                "owners": ["owner@example.com", "cto@example.com"],
                "description": "Blockchain survey",
            },
        ).status_code
        == 201
    )
    assert s.wait_job(s.upload("solana", [("BlockchainSolana.pdf", SOLANA_PDF)])["job_id"])["status"] == "succeeded"
    s.wait_live("solana", 1)
    response = s.http.post(
        "/collections/solana/goldensets",
        files={"file": ("rag_dataset.json", (SOLANA / "rag_dataset.json").read_bytes())},
    )
    assert response.status_code == 201, response.text
    assert response.json()["item_count"] == 58 and response.json()["source_format"] == "llamaindex"
    return s


def _evaluate(s: Stack, collection: str, version: int) -> dict[str, Any]:
    accepted = s.http.post(f"/collections/{collection}/versions/{version}/evaluations")
    assert accepted.status_code == 202, accepted.text
    job = s.wait_job(accepted.json()["job_id"], timeout=300)
    assert job["status"] == "succeeded", job
    run: dict[str, Any] = s.http.get(f"/evaluations/{accepted.json()['evaluation_id']}").json()
    return run


def test_evaluation_without_llm_scores_retrieval_and_marks_the_rest_unmeasured(solana: Stack) -> None:
    run = _evaluate(solana, "solana", 1)
    assert run["status"] == "succeeded" and run["golden_set_revision"] == 1 and run["answer_mode"] == "extractive"
    assert run["prompt_revision"] == 0, "the inline prompt_template is revision 0"
    for metric in ("context_precision", "context_recall"):
        summary = run["metrics"][metric]
        assert 0.0 <= summary["ci_low"] <= summary["mean"] <= summary["ci_high"] <= 1.0
        assert summary["measured"] == 58 and summary["not_measured"] == 0
    # Levenshtein similarity is strict (chunk boundaries differ from the references'), but far from 0.
    assert run["metrics"]["context_recall"]["mean"] > 0.1 and run["metrics"]["context_precision"]["mean"] > 0.2
    for metric in ("faithfulness", "answer_relevancy", "llm_context_precision", "llm_context_recall"):
        assert run["metrics"][metric] == {
            "mean": None,
            "ci_low": None,
            "ci_high": None,
            "measured": 0,
            "not_measured": 58,
            "not_measured_reasons": {"no_judge": 58},
        }
    assert run["judge_calls"] == 0 and run["warnings"] == [], "no judge is not a failing judge"
    assert len(run["results"]) == 58
    row = run["results"][0]
    assert row["retrieved_chunk_ids"] and row["answer"] and row["scores"]["faithfulness"] is None
    assert row["not_measured"]["faithfulness"] == "no_judge" and "context_recall" not in row["not_measured"]
    listing = solana.http.get("/collections/solana/evaluations").json()
    assert (listing["total"] >= 1 and "results" not in listing["items"][0]) or listing["items"][0]["results"] is None


def test_golden_set_errors_name_the_line_and_store_nothing(solana: Stack) -> None:
    bad = b'{"question": "ok?"}\n{"question": ""}\nnot json\n'
    response = solana.http.post("/collections/solana/goldensets", files={"file": ("bad.jsonl", bad)})
    assert response.status_code == 422
    assert "line 2" in response.json()["detail"] and "line 3" in response.json()["detail"]
    revisions = solana.http.get("/collections/solana/goldensets").json()
    assert [g["revision"] for g in revisions["items"]] == [1]


def test_evaluating_without_a_golden_set_is_a_clear_conflict(stack: Stack) -> None:
    stack.http.post("/collections", json={"name": "no-golden"})
    stack.wait_job(stack.upload("no-golden", [("a.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes())])["job_id"])
    stack.wait_live("no-golden", 1)
    response = stack.http.post("/collections/no-golden/versions/1/evaluations")
    assert response.status_code == 409 and response.json()["error"] == "GoldenSetMissing"


def test_gated_publish_holds_back_a_regression_and_promotes_a_good_version(stack: Stack) -> None:
    s = stack
    s.http.post(
        "/collections",
        json={
            "name": "gated-kb",
            "config": {
                "publish_policy": "gated",
                "evaluation": {"gate": {"context_recall": 0.05, "context_precision": 0.05}},
            },
        },
    )
    assert (
        s.http.post("/collections/gated-kb/goldensets", files={"file": ("golden.jsonl", _golden_jsonl(10))}).status_code
        == 201
    )
    s.wait_job(s.upload("gated-kb", [("BlockchainSolana.pdf", SOLANA_PDF)])["job_id"])
    v1 = _wait_gate(s, "gated-kb", 1)
    assert v1["state"] == "live" and v1["gate"]["passed"]

    # The PDF replaced by an unrelated paper: its answers are gone, so context recall collapses.
    unrelated = (DATASETS / "aragog-arxiv-qa" / "source_files" / "distilbert.pdf").read_bytes()
    s.wait_job(s.upload("gated-kb", [("BlockchainSolana.pdf", unrelated)])["job_id"])
    v2 = _wait_gate(s, "gated-kb", 2)
    assert v2["state"] == "ready" and not v2["gate"]["passed"] and v2["gate"]["against"] == 1
    assert any("context_recall dropped" in reason for reason in v2["gate"]["reasons"])
    assert s.http.get("/collections/gated-kb").json()["live_version"] == 1

    # The right PDF again plus one more document: no regression, so it goes live.
    s.wait_job(
        s.upload(
            "gated-kb",
            [("BlockchainSolana.pdf", SOLANA_PDF), ("notes.txt", (EXAMPLE_DOCS / "fake-text.txt").read_bytes())],
        )["job_id"]
    )
    v3 = _wait_gate(s, "gated-kb", 3)
    assert v3["gate"]["passed"] and v3["state"] == "live", v3["gate"]

    runs = s.http.get("/collections/gated-kb/evaluations").json()["items"]
    by_version = {r["version"]: r["id"] for r in runs}
    comparison = s.http.get(
        "/collections/gated-kb/evaluations/compare", params={"base": by_version[1], "candidate": by_version[2]}
    ).json()
    recall = next(d for d in comparison["deltas"] if d["metric"] == "context_recall")
    assert recall["pairs"] == 10 and recall["delta"] < -0.05 and recall["ci_high"] <= 0
    assert comparison["worse_questions"] and "context_recall" in comparison["worse_questions"][0]["drops"]


def _wait_gate(s: Stack, collection: str, number: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.check_alive()
        response = s.http.get(f"/collections/{collection}/versions/{number}")
        if response.status_code == 200 and response.json()["gate"]:
            version: dict[str, Any] = response.json()
            return version
        time.sleep(0.5)
    raise TimeoutError(f"no gate decision for {collection} v{number}")


def _parts(message: EmailMessage) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in message.walk():
        found.setdefault(part.get_content_type(), part)
    return found


def test_report_is_emailed_to_owners_with_chart_and_numbers(solana: Stack, mailbox: tuple[Mailbox, int]) -> None:
    box, _ = mailbox
    run = _evaluate(solana, "solana", 1)
    before = len(box.messages)
    accepted = solana.http.post("/collections/solana/reports/send")
    assert accepted.status_code == 202
    job = solana.wait_job(accepted.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["status"] == "sent", job
    assert len(box.messages) == before + 1
    message = box.messages[-1]
    assert message["To"] == "owner@example.com, cto@example.com" and message["From"] == "reports@ragkeep.test"
    assert "solana" in message["Subject"] and "v1" in message["Subject"]
    parts = _parts(message)
    assert {"text/plain", "text/html", "image/png"} <= set(parts)
    html, text = parts["text/html"].get_content(), parts["text/plain"].get_content()
    cid = parts["image/png"]["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html and parts["image/png"].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    recall = f"{run['metrics']['context_recall']['mean']:.3f}"
    assert recall in html and recall in text
    assert "Worst questions" in html and "Queries:" in html
    page = solana.http.get("/collections/solana/reports/latest")
    assert page.status_code == 200 and "data:image/png;base64," in page.text and recall in page.text
    stored = solana.http.get("/collections/solana/reports").json()["items"][0]
    assert stored["status"] == "sent" and stored["recipients"] == ["owner@example.com", "cto@example.com"]


def test_a_failed_send_is_retried_recorded_and_the_report_kept(stack: Stack) -> None:
    s = stack
    s.http.post("/collections", json={"name": "bouncing", "owners": [REJECTED]})
    job = s.wait_job(s.http.post("/collections/bouncing/reports/send").json()["job_id"], timeout=120)
    assert job["status"] == "failed" and "after 2 attempts" in job["error"]
    report = s.http.get("/collections/bouncing/reports").json()["items"][0]
    assert report["status"] == "failed" and report["attempts"] == 2 and "550" in report["error"]
    page = s.http.get(f"/collections/bouncing/reports/{report['id']}")
    assert page.status_code == 200 and "bouncing" in page.text


def test_beat_schedules_the_nightly_evaluation() -> None:
    schedule = create_celery(Settings()).conf.beat_schedule["nightly-evaluation"]
    assert schedule["task"] == TaskName.nightly.value
    cron = schedule["schedule"]
    assert cron.hour == {2} and cron.minute == {0} and schedule["options"]["expires"] > 0
    custom = create_celery(Settings(eval={"schedule": "15 4 * * 1"})).conf.beat_schedule["nightly-evaluation"]
    assert custom["schedule"].hour == {4} and custom["schedule"].day_of_week == {1}


def test_the_scheduled_task_runs_in_a_real_worker(solana: Stack, mailbox: tuple[Mailbox, int]) -> None:
    box, _ = mailbox
    before_runs = {r["id"] for r in solana.http.get("/collections/solana/evaluations").json()["items"]}
    before_mail = len(box.messages)
    settings = Settings(redis_url=REDIS_URL, queue_prefix=solana.env["RAGKEEP_QUEUE_PREFIX"])
    client = TaskClient(settings)
    assert client.send(TaskName.nightly, [])
    client.close()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(box.messages) == before_mail:
        solana.check_alive()
        time.sleep(0.5)
    new_runs = [
        r for r in solana.http.get("/collections/solana/evaluations").json()["items"] if r["id"] not in before_runs
    ]
    assert any(r["trigger"] == "nightly" and r["version"] == 1 and r["status"] == "succeeded" for r in new_runs)
    subjects = [m["Subject"] for m in box.messages[before_mail:]]
    assert any(re.search(r"\bsolana\b", s) for s in subjects), subjects


def test_cli_runs_an_evaluation_and_sends_a_report(solana: Stack, mailbox: tuple[Mailbox, int]) -> None:
    env = child_env({"RAGKEEP_URL": solana.url, "RAGKEEP_API_KEY": ADMIN_KEY})
    evaluated = subprocess.run(
        [str(BIN / "ragkeep"), "eval", "run", "--collection", "solana"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "of solana v1" in evaluated.stdout and re.search(r"context_recall\s+0\.\d{3}", evaluated.stdout)
    assert re.search(r"faithfulness\s+not measured \(58 questions: no judge configured on 58 of 58\)", evaluated.stdout)
    sent = subprocess.run(
        [str(BIN / "ragkeep"), "report", "send", "-c", "solana"], env=env, capture_output=True, text=True, timeout=120
    )
    assert sent.returncode == 0 and "succeeded" in sent.stdout, sent.stderr
    missing = subprocess.run(
        [str(BIN / "ragkeep"), "eval", "run", "-c", "no-such-kb"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "404 CollectionNotFound" in missing.stderr


def test_feedback_grows_the_golden_set_and_shows_in_the_report(solana: Stack) -> None:
    s = solana
    asked = s.http.post("/query", json={"collection": "solana", "question": "Who wrote the Solana survey paper?"})
    assert asked.status_code == 200
    query_id = asked.json()["query_id"]
    down = s.http.post(
        "/feedback",
        json={
            "query_id": query_id,
            "rating": "down",
            "comment": "missing authors",
            "expected_answer": "Xiangyu Li, Xinyu Wang, Tingli Kong, Junhao Zheng, Min Luo",
        },
    )
    assert down.status_code == 201 and down.json()["question"] == "Who wrote the Solana survey paper?"
    up = s.http.post("/feedback", json={"query_id": f"chatcmpl-{query_id}", "rating": "up"})
    assert up.status_code == 201, "the chat completion id is accepted too"
    assert s.http.post("/feedback", json={"query_id": "nope", "rating": "up"}).status_code == 404
    assert s.http.post("/feedback", json={"query_id": query_id, "rating": "meh"}).status_code == 422
    listed = s.http.get("/collections/solana/feedback", params={"rating": "down"}).json()
    assert listed["total"] == 1 and listed["items"][0]["comment"] == "missing authors"

    without_answer = s.http.post(
        "/collections/solana/goldensets/from-feedback", json={"feedback_ids": [up.json()["id"]]}
    )
    assert without_answer.status_code == 422 and "no expected_answer" in without_answer.json()["detail"]
    grown = s.http.post("/collections/solana/goldensets/from-feedback", json={"feedback_ids": [down.json()["id"]]})
    assert grown.status_code == 201, grown.text
    before = max(
        g["item_count"]
        for g in s.http.get("/collections/solana/goldensets").json()["items"]
        if g["revision"] < grown.json()["revision"]
    )
    assert grown.json()["item_count"] == before + 1 and grown.json()["source_format"] == "feedback"

    page = s.http.get("/collections/solana/reports/latest").text
    assert "Negative feedback: <strong>1</strong>" in page and "missing authors" in page

    reader = s.http.post("/keys", json={"name": "other-team", "role": "reader", "collections": ["gated-kb"]}).json()
    hidden = s.http.post(
        "/feedback", json={"query_id": query_id, "rating": "down"}, headers={"Authorization": f"Bearer {reader['key']}"}
    )
    assert hidden.status_code == 404
