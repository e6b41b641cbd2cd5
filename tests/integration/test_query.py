"""/query and /v1/chat/completions over versions built by a real worker from the shared datasets."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import DATASETS, EXAMPLE_DOCS
from tests.fakellm import FakeLLMServer, running_fake_llm
from tests.integration.conftest import ADMIN_KEY, AUTH, Stack
from tests.processes import start_api, stop

pytestmark = pytest.mark.integration

ARAGOG = DATASETS / "aragog-arxiv-qa"
SOLANA = DATASETS / "llamaindex-blockchain-solana"
JSQUAD = DATASETS / "jsquad-v1.3-valid"
PAPERS = ["bert.pdf", "distilbert.pdf", "roberta.pdf", "hellaswag.pdf"]
# Issue 18: terse questions ("What is DistilBERT?") embed far from the passages (cosine 0.26 to the
# DistilBERT abstract) and are declined at the default abstention threshold; the LLM tests ask one
# the retrieval evidence supports, so they test the LLM path rather than abstention.
LLM_QUESTION = "How much smaller and faster is DistilBERT than BERT?"
JAPANESE_ARTICLES = sorted((JSQUAD / "source_files").glob("*.txt"))[:12]


def _jsonl(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def research(redis_stack: Stack) -> Stack:
    """Collection `research`: four arXiv papers and the Solana paper, one live version."""
    s = redis_stack
    assert s.http.post("/collections", json={"name": "research"}).status_code == 201
    files = [(name, (ARAGOG / "source_files" / name).read_bytes()) for name in PAPERS]
    files.append(("BlockchainSolana.pdf", (SOLANA / "source_files" / "BlockchainSolana.pdf").read_bytes()))
    assert s.wait_job(s.upload("research", files)["job_id"], timeout=300)["status"] == "succeeded"
    assert s.wait_live("research", 1, timeout=300)["state"] == "live"
    return s


def _query(s: Stack, **body: Any) -> dict[str, Any]:
    response = s.http.post("/query", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _hit_rate(s: Stack, collection: str, items: list[tuple[str, str]], **extra: Any) -> float:
    hits = 0
    for question, filename in items:
        result = _query(s, collection=collection, question=question, mode="retrieve", top_k=5, **extra)
        hits += filename in {c["filename"] for c in result["citations"]}
    return hits / len(items)


def test_questions_cite_the_document_that_answers_them(research: Stack) -> None:
    aragog = [(q["question"], q["source_doc"]) for q in _jsonl(ARAGOG / "qa.jsonl") if q["source_doc"] in PAPERS]
    solana = [
        (e["query"], "BlockchainSolana.pdf")
        for e in json.loads((SOLANA / "rag_dataset.json").read_text())["examples"][:15]
    ]
    aragog_rate, solana_rate = _hit_rate(research, "research", aragog), _hit_rate(research, "research", solana)
    print(f"document hit rate@5: aragog {aragog_rate:.2f} ({len(aragog)} q), solana {solana_rate:.2f}")
    assert aragog_rate >= 0.8
    assert solana_rate >= 0.9


def test_answer_mode_without_llm_is_extractive_with_citations(research: Stack) -> None:
    result = _query(research, collection="research", question="How much smaller and faster is DistilBERT than BERT?")
    assert result["answer_mode"] == "extractive" and result["version"] == 1
    assert (result["citations"] and "[1]" in result["answer"]) or "[2]" in result["answer"]
    cited = {int(n) for n in __import__("re").findall(r"\[(\d+)\]", result["answer"])}
    assert cited == {c["n"] for c in result["citations"]}, "citations list exactly the cited passages"
    first = result["citations"][0]
    assert first["text"] and first["chunk_id"] and first["document_id"] and isinstance(first["page"], int)
    assert result["usage"]["embedding_tokens"] > 0 and result["latency_ms"]["total"] > 0


def test_filters_restrict_to_matching_metadata(research: Stack) -> None:
    result = _query(
        research,
        collection="research",
        question="pre-training objectives",
        mode="retrieve",
        top_k=8,
        filters={"filename": "roberta.pdf"},
    )
    assert result["citations"] and {c["filename"] for c in result["citations"]} == {"roberta.pdf"}
    both = _query(
        research,
        collection="research",
        question="pre-training",
        mode="retrieve",
        top_k=10,
        filters={"filename": ["roberta.pdf", "bert.pdf"]},
    )
    assert {c["filename"] for c in both["citations"]} <= {"roberta.pdf", "bert.pdf"}
    unknown = _query(research, collection="research", question="pre-training", filters={"no_such_key": "x"})
    assert unknown["citations"] == [] and unknown["answer_mode"] == "none"


def test_streaming_query_sends_tokens_then_the_final_answer(research: Stack) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    with research.http.stream(
        "POST", "/query", json={"collection": "research", "question": "What is HellaSwag?", "stream": True}
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert [k for k, _ in events][-1] == "done" and events[0][0] == "token"
    done = events[-1][1]
    assert "".join(e["text"] for k, e in events if k == "token") == done["answer"]
    assert done["citations"] and done["query_id"]


def test_query_errors_are_clear(research: Stack) -> None:
    s = research
    assert s.http.post("/query", json={"collection": "nope-nope", "question": "x"}).status_code == 404
    assert s.http.post("/query", json={"collection": "research", "question": "x", "version": 99}).status_code == 404
    assert s.http.post("/query", json={"collection": "research", "question": ""}).status_code == 422
    assert s.http.post("/query", json={"collection": "research", "question": "x", "top_k": 0}).status_code == 422
    assert s.http.post("/query", json={"collection": "research", "question": "x", "mode": "poem"}).status_code == 422
    s.http.post("/collections", json={"name": "empty-kb"})
    empty = s.http.post("/query", json={"collection": "empty-kb", "question": "x"})
    assert empty.status_code == 409 and empty.json()["error"] == "VersionNotReady"


def test_pinned_version_answers_from_its_own_documents(redis_stack: Stack) -> None:
    s = redis_stack
    s.http.post("/collections", json={"name": "office", "config": {"keep_versions": 1}})
    s.wait_job(s.upload("office", [("hours.txt", b"The office opens at nine in the morning on weekdays.")])["job_id"])
    s.wait_live("office", 1)
    s.wait_job(s.upload("office", [("hours.txt", b"The office opens at ten in the morning on weekdays.")])["job_id"])
    assert s.wait_live("office", 2)["state"] == "live"

    old = _query(s, collection="office", question="When does the office open?", version=1)
    new = _query(s, collection="office", question="When does the office open?")
    assert old["version"] == 1 and "nine" in old["answer"] and "ten" not in old["answer"]
    assert new["version"] == 2 and "ten" in new["answer"]

    # Two more versions: with keep_versions=1, version 1 loses its vectors and answers 410.
    s.wait_job(s.upload("office", [("extra.txt", b"Visitors sign in at the front desk.")])["job_id"])
    s.wait_live("office", 3)
    s.wait_job(s.upload("office", [("more.txt", b"Parking is behind the building.")])["job_id"])
    s.wait_live("office", 4)
    gone = s.http.post("/query", json={"collection": "office", "question": "When?", "version": 1})
    assert gone.status_code == 410 and gone.json()["error"] == "VersionDropped"
    assert s.http.get("/collections/office/versions/1").json()["dropped_at"] is not None


def test_hybrid_retrieval_finds_japanese_paragraphs(redis_stack: Stack) -> None:
    s = redis_stack
    s.http.post("/collections", json={"name": "jsquad", "config": {"retrieval": {"hybrid": False}}})
    upload = s.upload("jsquad", [(p.name, p.read_bytes()) for p in JAPANESE_ARTICLES])
    assert s.wait_job(upload["job_id"], timeout=300)["status"] == "succeeded"
    s.wait_live("jsquad", 1, timeout=300)
    names = {p.name for p in JAPANESE_ARTICLES}
    questions = [(q["question"], q["doc_id"]) for q in _jsonl(JSQUAD / "qa.jsonl") if q["doc_id"] in names][::15][:40]
    dense = _hit_rate(s, "jsquad", questions)
    patched = s.http.patch("/collections/jsquad", json={"config": {"retrieval": {"hybrid": True}}})
    assert patched.status_code == 200
    hybrid = _hit_rate(s, "jsquad", questions)
    print(f"JSQuAD article hit rate@5 over {len(questions)} questions: dense {dense:.2f}, hybrid {hybrid:.2f}")
    assert hybrid >= 0.85 and hybrid > dense


def _logged(s: Stack, query_id: str, columns: str) -> tuple[Any, ...]:
    """The query's row, read from the catalog file: the API's writer commits it moments after the answer."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(s.data_dir / "catalog.sqlite") as db:
            row: tuple[Any, ...] | None = db.execute(
                f"SELECT {columns} FROM query_log WHERE id = ?", (query_id,)
            ).fetchone()
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"query {query_id} was not logged"
        time.sleep(0.05)


def test_query_log_records_every_query(research: Stack) -> None:
    result = _query(research, collection="research", question="What datasets does RoBERTa use?")
    columns = "version_number, question, answer_mode, chunk_ids, cited_chunk_ids, latency_ms, usage"
    row = _logged(research, result["query_id"], columns)
    assert row[0] == 1 and row[1] == "What datasets does RoBERTa use?" and row[2] == "extractive"
    assert len(json.loads(row[3])) == 5 and json.loads(row[4]) == [c["chunk_id"] for c in result["citations"]]
    assert json.loads(row[5])["total"] > 0 and "embedding_tokens" in json.loads(row[6])


# ----------------------------------------------------------------- LLM mode


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    with running_fake_llm() as server:
        yield server


@pytest.fixture(scope="module")
def llm_api(research: Stack, fake_llm: FakeLLMServer) -> Iterator[str]:
    """A second API process on the same catalog, configured with the fake LLM."""
    env = {
        **research.env,
        "RAGKEEP_LLM__BASE_URL": fake_llm.base_url,
        "RAGKEEP_LLM__MODEL": "fake-1",
        "RAGKEEP_LLM__API_KEY": "sk-test",
        "RAGKEEP_PRICES": json.dumps({"fake-1": {"input_per_1k": 1.0, "output_per_1k": 2.0}}),
    }
    process, url = start_api(env, research.data_dir.parent / "llm-api.log")
    yield url
    stop(process)


def test_llm_answer_uses_the_prompt_and_cites_only_what_it_cites(
    research: Stack, llm_api: str, fake_llm: FakeLLMServer
) -> None:
    before = len(fake_llm.requests)
    result = httpx.post(
        f"{llm_api}/query",
        headers=AUTH,
        json={"collection": "research", "question": LLM_QUESTION},
        timeout=60,
    ).json()
    assert result["answer_mode"] == "llm" and result["answer"].endswith("[1]")
    assert [c["n"] for c in result["citations"]] == [1], "only the cited passage is listed"
    request = fake_llm.requests[before]
    prompt = request["messages"][-1]["content"]
    assert request["model"] == "fake-1" and "[1] (" in prompt and "[5] (" in prompt
    assert f"Question: {LLM_QUESTION}" in prompt and "square brackets" in prompt
    assert result["usage"]["prompt_tokens"] == len(prompt.split())
    assert result["usage"]["completion_tokens"] == len(result["answer"].split())
    usage = result["usage"]
    assert usage["cost"] == pytest.approx(usage["prompt_tokens"] / 1000 + usage["completion_tokens"] * 2 / 1000)
    extractive = _query(research, collection="research", question="What is BERT?")  # through the other API
    _logged(research, extractive["query_id"], "id")  # that API's writer has committed it
    spent = httpx.get(f"{llm_api}/collections/research/usage", headers=AUTH, timeout=30).json()
    llm_days = [d for d in spent["days"] if d["model"] == "fake-1"]
    assert llm_days and llm_days[0]["cost"] >= usage["cost"] and spent["cost"] >= usage["cost"]
    assert any(d["model"] == "none" and d["queries"] > 0 for d in spent["days"]), "extractive queries count too"
    scraped = httpx.get(f"{llm_api}/metrics", timeout=30).text
    assert 'ragkeep_queries_total{answer_mode="llm",collection="research"}' in scraped
    tokens_in = re.search(
        r'ragkeep_llm_tokens_total\{collection="research",direction="in",model="fake-1"\} (\d+)', scraped
    )
    assert tokens_in and int(float(tokens_in.group(1))) >= result["usage"]["prompt_tokens"]


def test_llm_streaming_reports_tokens_and_usage(llm_api: str) -> None:
    events = []
    with httpx.stream(
        "POST",
        f"{llm_api}/query",
        json={"collection": "research", "question": "What is RoBERTa?", "stream": True},
        timeout=60,
        headers=AUTH,
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    tokens, done = events[:-1], events[-1]
    assert len(tokens) > 3 and "".join(t["text"] for t in tokens).strip() == done["answer"]
    assert done["answer_mode"] == "llm" and done["usage"]["prompt_tokens"] > 0 and done["citations"]


def test_openai_client_non_streaming_and_streaming(llm_api: str) -> None:
    client = openai.OpenAI(base_url=f"{llm_api}/v1", api_key=ADMIN_KEY, max_retries=0)
    assert "research" in {m.id for m in client.models.list()}
    completion = client.chat.completions.create(
        model="research",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": LLM_QUESTION}],
    )
    assert completion.choices[0].message.content and completion.choices[0].message.content.endswith("[1]")
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    extra = completion.model_extra or {}
    assert extra["citations"][0]["n"] == 1 and extra["ragkeep"]["version"] == 1

    pieces, final_extra = [], {}
    stream = client.chat.completions.create(
        model="research@1",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is BERT?"}],
    )
    usage = None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason == "stop":
                final_extra = chunk.model_extra or {}
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces).strip().endswith("[1]")
    assert final_extra["citations"] and final_extra["ragkeep"]["answer_mode"] == "llm"
    assert usage is not None and usage.completion_tokens > 0

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-kb", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="research@x", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(("model", "timeout"), [("broken", "30"), ("slow", "1")])
def test_llm_failure_degrades_to_extractive_with_a_warning(
    research: Stack, fake_llm: FakeLLMServer, model: str, timeout: str
) -> None:
    env = {
        **research.env,
        "RAGKEEP_LLM__BASE_URL": fake_llm.base_url,
        "RAGKEEP_LLM__MODEL": model,
        "RAGKEEP_LLM__TIMEOUT_S": timeout,
    }
    process, url = start_api(env, research.data_dir.parent / f"llm-{model}.log")
    try:
        plain = httpx.post(
            f"{url}/query", headers=AUTH, json={"collection": "research", "question": "What is BERT?"}, timeout=60
        )
        assert plain.status_code == 200
        body = plain.json()
        assert body["answer_mode"] == "extractive" and body["answer"] and body["citations"]
        assert body["warnings"] and "LLM endpoint failed" in body["warnings"][0]
        with httpx.stream(
            "POST",
            f"{url}/query",
            timeout=60,
            headers=AUTH,
            json={"collection": "research", "question": "What is BERT?", "stream": True},
        ) as streamed:
            done = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: ")][-1]
        assert done["answer_mode"] == "extractive" and done["warnings"]
    finally:
        stop(process)


def test_example_docs_are_queryable(redis_stack: Stack) -> None:
    s = redis_stack
    s.http.post("/collections", json={"name": "formats"})
    files = [(n, (EXAMPLE_DOCS / n).read_bytes()) for n in ("fake-email.eml", "stanley-cups.xlsx", "fake-html.html")]
    s.wait_job(s.upload("formats", files)["job_id"])
    s.wait_live("formats", 1)
    result = _query(s, collection="formats", question="How many Stanley Cups have the Blues won?", mode="retrieve")
    assert result["citations"][0]["filename"] == "stanley-cups.xlsx"


def test_a_recreated_collection_is_not_served_from_a_stale_index(redis_stack: Stack) -> None:
    """Regression: warm indexes were keyed by Chroma collection name, which a re-created collection reuses."""
    s = redis_stack
    for text in (b"The cafeteria serves pasta on Mondays.", b"The cafeteria serves curry on Mondays."):
        s.http.delete("/collections/canteen")
        s.http.post("/collections", json={"name": "canteen"})
        s.wait_job(s.upload("canteen", [("menu.txt", text)])["job_id"])
        s.wait_live("canteen", 1)
        answer = _query(s, collection="canteen", question="What does the cafeteria serve on Mondays?")["answer"]
        assert text.decode().split()[3] in answer


def test_pinned_prompt_revision_is_used_and_recorded(research: Stack, llm_api: str, fake_llm: FakeLLMServer) -> None:
    s = research
    created = s.http.post(
        "/collections/research/prompts",
        json={"template": "PROMPT-V1 Passages:\n{context}\n\nQuestion: {question}\nAnswer:"},
    )
    assert created.status_code == 201
    revision = created.json()["revision"]
    s.http.patch("/collections/research", json={"config": {"prompt_revision": revision}})
    try:
        before = len(fake_llm.requests)
        result = httpx.post(
            f"{llm_api}/query",
            headers=AUTH,
            timeout=60,
            json={"collection": "research", "question": "What is RoBERTa?"},
        ).json()
        assert fake_llm.requests[before]["messages"][-1]["content"].startswith("PROMPT-V1 Passages:")
        assert _logged(s, result["query_id"], "prompt_revision") == (revision,)
    finally:
        s.http.patch("/collections/research", json={"config": {"prompt_revision": None}})


def test_each_version_is_queried_with_the_model_that_embedded_it(redis_stack: Stack) -> None:
    """An int8 collection answers with int8 query vectors; after a switch to the float model, both versions match.

    A chunk queried with its own text scores a cosine of 1 only when the question is embedded
    by the same model as the chunk (the two models' vectors differ by about 0.005).
    """
    s = redis_stack
    # Chunks embedded alone (no context header), so a question that repeats one scores ~1.
    int8 = {"ingestion": {"embedding_model": "all-MiniLM-L6-v2-int8", "context": "off"}}
    assert s.http.post("/collections", json={"name": "quantized", "config": int8}).status_code == 201
    lines = {
        "hours.txt": "The office opens at nine in the morning on weekdays.",
        "parking.txt": "Visitors park behind the building, next to the loading bay.",
    }
    # One upload each: small files of one upload are embedded in one batch, and int8's dynamic quantization
    # scales each batch by its own range, so a chunk batched with another is not bit-for-bit the question alone.
    for number, (name, text) in enumerate(lines.items(), start=1):
        assert s.wait_job(s.upload("quantized", [(name, text.encode())])["job_id"])["status"] == "succeeded"
        assert s.wait_live("quantized", number)["embedding_model"] == "all-MiniLM-L6-v2-int8"

    def top_score(**pin: Any) -> float:
        result = _query(s, collection="quantized", question=lines["parking.txt"], mode="retrieve", **pin)
        assert result["citations"][0]["filename"] == "parking.txt"
        return float(result["citations"][0]["score"])

    assert top_score() > 0.9999

    patched = s.http.patch(
        "/collections/quantized", json={"config": {"ingestion": {"embedding_model": "all-MiniLM-L6-v2"}}}
    )
    assert patched.status_code == 200
    assert s.wait_job(s.http.post("/collections/quantized/versions").json()["job_id"])["status"] == "succeeded"
    v3 = s.wait_live("quantized", 3)
    assert v3["embedding_model"] == "all-MiniLM-L6-v2" and v3["base_version"] is None  # re-embedded in full
    assert top_score() > 0.9999
    assert top_score(version=2) > 0.9999
