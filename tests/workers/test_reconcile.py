"""The reconciler's decisions, run in this process against a real catalog and the real Redis.

No worker consumes the queues here: the test reads what was sent from them.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session

from core import catalog
from core.chroma import version_collection_name
from core.config import CollectionConfig
from core.db import create_schema
from core.models import (
    Collection,
    DocumentStatus,
    GoldenSet,
    Job,
    JobKind,
    JobStatus,
    Version,
    VersionState,
    utcnow,
)
from core.settings import Settings
from tests.conftest import REDIS_URL
from workers.names import Queue, queue_name
from workers.resources import Resources, close_resources, init_resources


@pytest.fixture
def res(tmp_path: Path) -> Iterator[Resources]:
    settings = Settings(
        data_dir=tmp_path,
        redis_url=REDIS_URL,
        queue_prefix=f"t{uuid.uuid4().hex[:8]}-",
        chroma_url="http://127.0.0.1:9",
    )
    resources = init_resources(settings, warm=False)
    create_schema(resources.db.engine)
    yield resources
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*[queue_name(q, settings.queue_prefix) for q in Queue])
    client.close()
    close_resources()


def _sent(res: Resources) -> dict[str, list[Any]]:
    """Task name -> the first argument of each message waiting in ragkeep's queues."""
    client = redis.Redis.from_url(REDIS_URL)
    sent: dict[str, list[Any]] = {}
    for queue in Queue:
        for raw in client.lrange(queue_name(queue, res.settings.queue_prefix), 0, -1):
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            sent.setdefault(message["headers"]["task"], []).append(args[0] if args else "")
    client.close()
    return sent


def _stale(job: Job) -> None:
    job.created_at = utcnow() - timedelta(hours=1)


def _evaluable(session: Session) -> tuple[Collection, Version, GoldenSet]:
    """A collection with a ready version and a golden set: what an evaluation job needs."""
    collection = catalog.create_collection(session, "recon-kb", "", [], CollectionConfig())
    session.commit()
    build = catalog.create_job(session, JobKind.build, collection.id)
    version = catalog.create_version(session, collection, build.id, version_collection_name)
    version.state = VersionState.ready
    build.status = JobStatus.succeeded
    golden = catalog.create_golden_set(session, collection, "g.jsonl", "jsonl", [{"question": "q?"}])
    return collection, version, golden


def test_reconciler_sends_each_lost_job_with_its_own_task(res: Resources) -> None:
    """Evaluation and report jobs were counted as re-dispatched and never sent."""
    from workers import tasks

    with res.db.session() as session:
        collection, version, golden = _evaluable(session)
        evaluation = catalog.create_job(session, JobKind.evaluate, collection.id)
        run = catalog.create_eval_run(session, collection, version, golden, "manual", evaluation)
        orphan = catalog.create_job(session, JobKind.evaluate, collection.id)  # its run is gone
        report = catalog.create_job(session, JobKind.report, collection.id)
        lost_build = catalog.create_job(session, JobKind.build, collection.id)
        for job in (evaluation, orphan, report, lost_build):
            _stale(job)
        session.commit()
        ids = {"evaluation": evaluation.id, "orphan": orphan.id, "report": report.id, "build": lost_build.id}
        run_id = run.id

    outcome = tasks.reconcile()

    assert outcome == {
        "evaluate re-sent": 1,
        "evaluate failed (cannot be re-sent)": 1,
        "report re-sent": 1,
        "build re-sent": 1,
    }
    assert _sent(res) == {"eval.run": [run_id], "report.send": [ids["report"]], "ingest.build_version": [ids["build"]]}
    with res.db.session() as session:
        failed = session.get(Job, ids["orphan"])
        assert failed is not None and failed.status == JobStatus.failed and "no longer exists" in (failed.error or "")
    assert tasks.reconcile() == {}, "a re-sent job is not sent again before it is stuck again"


def test_an_evaluation_recorded_without_its_job_is_settled_not_resent(res: Resources) -> None:
    from workers import tasks

    with res.db.session() as session:
        collection, version, golden = _evaluable(session)
        job = catalog.create_job(session, JobKind.evaluate, collection.id)
        run = catalog.create_eval_run(session, collection, version, golden, "manual", job)
        run.status = JobStatus.succeeded
        _stale(job)
        session.commit()
        job_id = job.id
    assert tasks.reconcile() == {"evaluate settled (nothing left to run)": 1}
    assert _sent(res) == {}
    with res.db.session() as session:
        settled = session.get(Job, job_id)
        assert settled is not None and settled.status == JobStatus.succeeded


def test_a_quiet_ingest_job_gets_its_unparsed_files_sent_again(res: Resources) -> None:
    """A file left `parsing` by a killed worker goes back to queued, so its new message can claim it."""
    from workers import tasks

    with res.db.session() as session:
        collection = catalog.create_collection(session, "recon-kb", "", [], CollectionConfig())
        job = catalog.create_job(session, JobKind.ingest, collection.id, total=3)
        files = [catalog.IncomingFile(f"{n}.txt", n * 64, 10, "txt", "text/plain", {}) for n in "abc"]
        catalog.record_upload(session, collection, files, job)
        revisions = catalog.revisions_of_job(session, job.id)
        statuses = [DocumentStatus.ready, DocumentStatus.parsing, DocumentStatus.queued]
        for revision, status in zip(revisions, statuses, strict=True):
            revision.status = status
        job.status = JobStatus.running
        job.created_at = job.started_at = job.heartbeat_at = utcnow() - timedelta(hours=1)
        session.commit()
        unparsed = sorted(r.id for r in revisions[1:])

    assert tasks.reconcile() == {"ingest re-sent": 1}
    # Two small texts of one job: sent again as one group (release.batches).
    assert [sorted(group) for group in _sent(res)["ingest.parse_documents"]] == [unparsed]
    with res.db.session() as session:
        assert {r.status for r in catalog.revisions_of_job(session, job.id) if r.id in unparsed} == {"queued"}
