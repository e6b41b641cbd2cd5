"""Lifecycle rules of ``release/`` on a real SQLite catalog, without Celery: what is sent is recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from core import catalog
from core.config import CollectionConfig
from core.db import Database, create_schema
from core.models import Collection, Job, JobKind, JobStatus, Version, VersionDocument, VersionState, utcnow
from ingest.pipeline import BuildResult
from release import builds, gate, publish
from release.dispatch import Step, open_job
from tests.release.conftest import Sent

STUCK = timedelta(minutes=5)


def _collection(session: Session, **config: object) -> Collection:
    collection = catalog.create_collection(session, "kb-one", "", [], CollectionConfig.model_validate(config))
    catalog.record_upload(
        session,
        collection,
        [catalog.IncomingFile("a.txt", "a" * 64, 10, "txt", "text/plain", {})],
        catalog.create_job(session, JobKind.ingest, collection.id),
    )
    session.commit()
    return collection


def _ready_documents(session: Session, collection: Collection) -> None:
    for _, revision in catalog.buildable_revisions(session, collection.id):
        revision.status = "ready"
    for doc in catalog.list_documents(session, collection, 0, 10)[0]:
        current = catalog.current_revision(session, doc)
        assert current is not None
        current.status = "ready"
    session.commit()


def _tools(sent: Sent, dropped: list[str], built: list[int]) -> builds.BuildTools:
    def materialise(
        session: Session, collection: Collection, version: Version, progress: builds.Progress
    ) -> BuildResult:
        """The ingest step's effect on the catalog (its vectors are ingest's own tests' business)."""
        built.append(version.number)
        for doc, rev in catalog.buildable_revisions(session, collection.id):
            session.add(
                VersionDocument(version_id=version.id, document_id=doc.id, revision_id=rev.id, filename=doc.filename)
            )
        version.state = VersionState.ready
        version.chunk_count = 3
        version.built_at = utcnow()
        progress(1, 1)
        return BuildResult(1, 3, 3, 0, [])

    return builds.BuildTools(materialise, dropped.append, sent, STUCK)


def _running_build(session: Session, collection: Collection, heartbeat_age: timedelta) -> Job:
    job = catalog.create_job(session, JobKind.build, collection.id)
    job.status = JobStatus.running
    job.started_at = job.heartbeat_at = utcnow() - heartbeat_age
    session.commit()
    return job


def test_one_pending_build_per_collection_absorbs_every_change(session: Session) -> None:
    collection = _collection(session)
    sent = Sent()
    first = builds.request_build(session, collection.id, sent, countdown=2.0)
    again = builds.request_build(session, collection.id, sent, countdown=2.0)
    assert first is not None and again == first
    assert sent.steps == [(Step.build, first, 2.0)], "the second change joins the pending build, nothing is sent"
    job = session.get(Job, first)
    assert job is not None and job.trigger == "change" and job.result == {}
    assert job.dispatched_at is not None and job.dispatched_at > utcnow(), "due when its countdown ends"


def test_a_build_waits_for_a_live_running_build_but_not_for_a_dead_one(session: Session) -> None:
    collection = _collection(session)
    running = _running_build(session, collection, heartbeat_age=timedelta(seconds=1))
    waiting = catalog.create_job(session, JobKind.build, collection.id)
    session.commit()
    assert not builds.may_start(session, waiting, STUCK)
    session.refresh(waiting)
    assert waiting.status == JobStatus.queued and waiting.dispatched_at is not None
    running.heartbeat_at = running.started_at = utcnow() - 2 * STUCK  # its worker died
    session.commit()
    assert builds.may_start(session, waiting, STUCK)


def test_a_build_that_ends_starts_the_waiting_build_and_leaves_a_debounced_one(session: Session) -> None:
    collection = _collection(session)
    _ready_documents(session, collection)
    sent, dropped, built = Sent(), [], []
    tools = _tools(sent, dropped, built)
    running = _running_build(session, collection, heartbeat_age=timedelta(seconds=1))
    waiting = catalog.create_job(session, JobKind.build, collection.id)
    session.commit()
    assert not builds.may_start(session, waiting, STUCK)
    later = builds.request_build(
        session, catalog.create_collection(session, "other", "", [], CollectionConfig()).id, sent, 60.0
    )
    sent.steps.clear()

    outcome = builds.build(session, running, collection, tools)

    assert outcome.version == 1 and built == [1]
    assert sent.steps == [(Step.build, waiting.id, None)], "only the waiting build of this collection is sent"
    assert later is not None and (Step.build, later, None) not in sent.steps


def test_auto_policy_publishes_and_a_build_by_hand_always_builds(session: Session) -> None:
    collection = _collection(session, publish_policy="auto")
    _ready_documents(session, collection)
    sent, dropped, built = Sent(), [], []
    tools = _tools(sent, dropped, built)
    first = catalog.create_job(session, JobKind.build, collection.id)
    assert builds.build(session, first, collection, tools).version == 1
    session.refresh(collection)
    live = session.get(Version, collection.live_version_id or "")
    assert live is not None and live.number == 1, "publish_policy auto publishes the new version"
    manual = builds.start_manual_build(session, collection, sent, lambda target, **_: None)
    assert manual.trigger == "manual" and manual.result == {}, "the trigger is an input, not a result"
    assert builds.build(session, manual, collection, tools).version == 2 and built == [1, 2]


@pytest.mark.parametrize("context_metadata", [[], ["company", "quarter"]])
def test_a_collection_whose_documents_and_config_are_built_is_unchanged(
    session: Session, context_metadata: list[str]
) -> None:
    """The version's stored config is compared as stored: a tuple in the model is a list in the JSON row."""
    collection = _collection(session, ingestion={"context_metadata": context_metadata})
    _ready_documents(session, collection)
    assert not builds.unchanged(session, collection), "nothing is built yet"
    builds.build(session, catalog.create_job(session, JobKind.build, collection.id), collection, _tools(Sent(), [], []))
    session.commit()
    session.expire_all()  # read the version and collection back from their rows
    assert builds.unchanged(session, collection)
    catalog.record_upload(
        session,
        collection,
        [catalog.IncomingFile("b.txt", "b" * 64, 10, "txt", "text/plain", {})],
        catalog.create_job(session, JobKind.ingest, collection.id),
    )
    _ready_documents(session, collection)
    assert not builds.unchanged(session, collection), "a new document changes it"


def test_a_failed_build_fails_its_version_drops_its_vectors_and_starts_the_waiting_build(session: Session) -> None:
    collection = _collection(session)
    _ready_documents(session, collection)
    sent, dropped, built = Sent(), [], []
    job = catalog.create_job(session, JobKind.build, collection.id)
    job.status = JobStatus.running
    version = catalog.create_version(session, collection, job.id, lambda name, n: f"rk_{name}_v{n}")
    waiting = catalog.create_job(session, JobKind.build, collection.id)
    session.commit()

    outcome = builds.fail(session, job.id, "internal error: boom", _tools(sent, dropped, built))

    assert outcome.state == VersionState.failed
    assert version.state == VersionState.failed and version.dropped_at is not None
    assert dropped == [version.chroma_collection]
    assert job.status == JobStatus.failed and job.error == f"version {version.number}: internal error: boom"
    assert sent.steps == [(Step.build, waiting.id, None)]


def test_a_gated_build_without_a_golden_set_records_a_typed_refusal(session: Session) -> None:
    collection = _collection(session, publish_policy="gated")
    job = catalog.create_job(session, JobKind.build, collection.id)
    version = catalog.create_version(session, collection, job.id, lambda name, n: f"rk_{name}_v{n}")
    version.state = VersionState.ready
    sent = Sent()
    gate.start_gate(session, collection, version, sent)
    assert sent.steps == []
    assert version.gate["passed"] is False and version.gate["outcome"] == gate.GateOutcome.no_golden_set
    assert "publish this version by hand" in version.gate["reasons"][0]


def test_a_gate_decision_passes_only_when_no_metric_regressed() -> None:
    assert gate.GateDecision(gate.GateOutcome.unopposed, []).passed
    regressed = gate.GateDecision(gate.GateOutcome.regressed, ["x dropped"], "r2", 1, "r1", {"x": -0.2})
    assert not regressed.passed
    assert regressed.as_json() == {
        "passed": False,
        "outcome": "regressed",
        "reasons": ["x dropped"],
        "against": 1,
        "evaluation_id": "r2",
        "base_evaluation_id": "r1",
        "deltas": {"x": -0.2},
    }


def test_retention_keeps_the_newest_versions_and_drops_the_rest(session: Session) -> None:
    collection = _collection(session)
    for _ in range(4):
        job = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, job.id, lambda name, n: f"rk_{name}_v{n}")
        version.state = VersionState.ready
        session.commit()
    dropped: list[str] = []
    assert sorted(publish.apply_retention(session, collection, 2, dropped.append)) == [1, 2]
    assert sorted(dropped) == ["rk_kb-one_v1", "rk_kb-one_v2"]


def test_two_deliveries_of_one_queued_job_start_it_once(tmp_path: Path) -> None:
    """A build sent by the build it waited for, while its own message is being taken, runs once."""
    db = Database(f"sqlite:///{tmp_path / 'race.sqlite'}")
    create_schema(db.engine)
    with db.session() as session:
        collection = _collection(session)
        job_id = catalog.create_job(session, JobKind.build, collection.id).id
    with db.session() as first, db.session() as second:
        seen_queued = second.get(Job, job_id)  # the second delivery read the job while it was still queued
        assert seen_queued is not None and seen_queued.status == JobStatus.queued
        opened = open_job(first, job_id)
        assert opened is not None and opened[0].status == JobStatus.running and opened[0].attempts == 1
        assert open_job(second, job_id) is None
    db.dispose()
