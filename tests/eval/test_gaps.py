"""Knowledge gaps from the query log, grouped with the real embedding model, on SQLite and PostgreSQL;
and the owner report's gap and unsupported-answer sections."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core import catalog
from core.config import CollectionConfig
from core.db import Database
from core.embedding import Embedder
from core.errors import InvalidInput
from core.models import Collection, DocumentStatus, EvalTrigger, JobKind, JobStatus, QueryLog, VersionState, utcnow
from core.settings import EvalSettings
from eval.gaps import find_gaps, window
from eval.report import build_report

PASSWORD = ["How do I reset my password?", "I forgot my password, how can I reset it?", "Steps to reset a password?"]
PETS = ["Can I bring my dog to the office?", "Are pets allowed at work?"]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def _log(collection: Collection, question: str, **values: object) -> QueryLog:
    row: dict[str, object] = {
        "collection_id": collection.id,
        "version_number": 1,
        "question": question,
        "mode": "answer",
        "answer_mode": "extractive",
        "answer": "an answer",
        "confidence": 0.9,
        "grounding_score": 1.0,
        "unsupported_sentences": 0,
        **values,
    }
    return QueryLog(**row)


def _collection_with_log(db: Database) -> list[str]:
    with db.sessions() as session:
        collection = catalog.create_collection(session, "handbook", "", ["owner@example.com"], CollectionConfig())
        job = catalog.create_job(session, JobKind.ingest, collection.id)
        files = [
            catalog.IncomingFile(n, s * 64, 10, "txt", "text/plain", {}) for n, s in (("it.txt", "a"), ("hr.txt", "b"))
        ]
        uploaded = catalog.record_upload(session, collection, files, job)
        for outcome in uploaded:
            outcome.revision.status = DocumentStatus.ready
        it, hr = (f"{o.revision.id}:0" for o in uploaded)
        now = utcnow()
        rows = [
            *(_log(collection, q, answer_mode="abstained", confidence=0.1, chunk_ids=[it, hr]) for q in PASSWORD),
            *(_log(collection, q, confidence=0.35, chunk_ids=[hr]) for q in PETS),
            _log(collection, "How many vacation days do I get?", chunk_ids=[hr]),  # confident: no gap
            _log(
                collection,
                "Old question about passwords?",
                answer_mode="abstained",
                created_at=now - timedelta(days=30),
            ),
            _log(collection, "password reset", mode="retrieve", answer_mode="none", confidence=0.1),  # no answer asked
            _log(
                collection,
                "What is the travel budget?",
                answer="The budget is 9000 euros.",
                grounding_score=0.0,
                unsupported_sentences=1,
                warnings=['1 answer sentence(s) not supported by the passages they cite: "The budget is 9000 euros."'],
            ),
        ]
        session.add_all(rows)
        session.commit()
        return [r.id for r in rows]


def test_declined_and_low_confidence_questions_are_grouped_by_meaning(db: Database, embedder: Embedder) -> None:
    ids = _collection_with_log(db)
    since, until = window(None, None)
    with db.sessions() as session:
        gaps = find_gaps(session, catalog.get_collection(session, "handbook"), lambda _: embedder, since, until)
    assert gaps.questions == 5 and gaps.declined == 3
    assert [c.count for c in gaps.clusters] == [3, 2], "paraphrases together, the other topic apart"
    password, pets = gaps.clusters
    assert {q.question for q in password.examples} == set(PASSWORD) and set(ids[:3]) == {
        q.query_id for q in password.examples
    }
    assert password.closest_documents == ["it.txt", "hr.txt"] and pets.closest_documents == ["hr.txt"]
    assert {q.question for q in pets.examples} == set(PETS) and all(
        q.answer_mode == "extractive" for q in pets.examples
    )


def test_the_window_limits_gaps_and_rejects_an_empty_range(db: Database, embedder: Embedder) -> None:
    _collection_with_log(db)
    now = utcnow()
    with db.sessions() as session:
        collection = catalog.get_collection(session, "handbook")
        old = find_gaps(
            session, collection, lambda _: embedder, *window(now - timedelta(days=40), now - timedelta(days=20))
        )
    assert old.questions == 1 and old.clusters[0].examples[0].question == "Old question about passwords?"
    with pytest.raises(InvalidInput, match="before"):
        window(now, now - timedelta(days=1))
    with pytest.raises(InvalidInput, match="between the years"):
        window(None, datetime(1, 1, 2))  # seven days before it is before year 1


def test_report_names_the_gaps_and_the_unsupported_answers(db: Database, embedder: Embedder) -> None:
    _collection_with_log(db)
    with db.sessions() as session:
        report = build_report(session, catalog.get_collection(session, "handbook"), EvalSettings(), lambda _: embedder)
    assert [c["count"] for c in report.context["gaps"]["clusters"]] == [3, 2]
    assert report.context["unsupported"]["total"] == 1
    assert "What your users asked that the knowledge base does not answer" in report.html
    assert "WHAT YOUR USERS ASKED THAT THE KNOWLEDGE BASE DOES NOT ANSWER" in report.text
    for rendering in (report.html, report.text):
        assert "How do I reset my password?" in rendering and "Are pets allowed at work?" in rendering
        assert "What is the travel budget?" in rendering and "9000 euros" in rendering
        assert "How many vacation days" not in rendering
    assert "asked 3 times" in report.text and "Possibly unsupported answers" in report.html


def test_without_a_judge_the_report_shows_groundedness_as_ragkeeps_own_check(db: Database) -> None:
    """Issue 18 §3: faithfulness 'not measured (no judge configured)' beside ragkeep's groundedness, never as RAGAS."""
    with db.sessions() as session:
        collection = catalog.create_collection(session, "plain", "", [], CollectionConfig())
        job = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, job.id, lambda name, n: f"rk_{name}_v{n}")
        version.state = VersionState.ready
        session.flush()
        catalog.publish(session, collection, version)
        golden = catalog.create_golden_set(session, collection, "g.jsonl", "jsonl", [{"question": "q?"}])
        run = catalog.create_eval_run(session, collection, version, golden, EvalTrigger.manual, job)
        unmeasured = {"mean": None, "ci_low": None, "ci_high": None, "measured": 0, "not_measured": 4}
        run.metrics = {
            "faithfulness": {**unmeasured, "not_measured_reasons": {"no_judge": 4}},
            "groundedness": {"mean": 0.75, "ci_low": 0.5, "ci_high": 1.0, "measured": 4, "not_measured": 0},
        }
        run.status = JobStatus.succeeded
        session.commit()
        report = build_report(session, collection, EvalSettings())
    assert "judge: none" in report.text and report.subject.endswith("ragkeep groundedness 0.75")
    assert "faithfulness: not measured (no judge configured)" in report.text
    assert (
        "ragkeep's own groundedness (share of answer sentences their passages support; not RAGAS): 0.750" in report.text
    )
    assert "- groundedness (ragkeep's own check, not RAGAS): 0.750" in report.text
    assert (
        "not measured (no judge configured)" in report.html and "groundedness (ragkeep&#39;s own check" in report.html
    )
