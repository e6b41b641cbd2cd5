"""Which unfinished jobs the reconciler takes as lost, per kind (``catalog.stale_jobs``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from core import catalog
from core.config import CollectionConfig
from core.db import Database
from core.models import Job, JobKind, JobStatus, utcnow

STUCK_AFTER = timedelta(minutes=5)


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.session() as s:
        catalog.create_collection(s, "job-kb", "", [], CollectionConfig())
        s.commit()
        yield s


def _job(
    session: Session,
    kind: JobKind,
    status: JobStatus,
    *,
    created: timedelta,
    dispatched: timedelta | None = None,
    started: timedelta | None = None,
    heartbeat: timedelta | None = None,
) -> str:
    """A job whose timestamps lie the given times in the past (negative: in the future)."""
    now = utcnow()

    def ago(delta: timedelta | None) -> datetime | None:
        return None if delta is None else now - delta

    job = catalog.create_job(session, kind, catalog.get_collection(session, "job-kb").id)
    job.status = status
    job.created_at = now - created
    job.dispatched_at, job.started_at, job.heartbeat_at = ago(dispatched), ago(started), ago(heartbeat)
    session.commit()
    return job.id


def test_stale_jobs_takes_queued_and_silent_running_jobs_of_every_kind_as_lost(session: Session) -> None:
    """Evaluation and report jobs were never re-dispatched, and a dead worker's build or
    ingest job was taken as alive until its time limit (over an hour for a build) was over."""
    hour, moment = timedelta(hours=1), timedelta(seconds=10)
    lost = {
        # Queued, the message lost before any worker took it: every kind.
        **{
            f"queued {kind}": _job(session, kind, JobStatus.queued, created=hour)
            for kind in (JobKind.ingest, JobKind.build, JobKind.evaluate, JobKind.report)
        },
        "queued report, dispatched long ago": _job(
            session, JobKind.report, JobStatus.queued, created=hour, dispatched=hour
        ),
        # Running, but the worker process stopped beating: it died.
        "build without heartbeat": _job(
            session, JobKind.build, JobStatus.running, created=hour, started=hour, heartbeat=hour
        ),
        "evaluation never beating": _job(session, JobKind.evaluate, JobStatus.running, created=hour, started=hour),
        "report without heartbeat": _job(
            session, JobKind.report, JobStatus.running, created=hour, dispatched=hour, started=hour, heartbeat=hour
        ),
        "ingest whose files stopped parsing": _job(
            session, JobKind.ingest, JobStatus.running, created=hour, started=hour, heartbeat=hour
        ),
    }
    alive = {
        "queued build, just dispatched": _job(
            session, JobKind.build, JobStatus.queued, created=hour, dispatched=moment
        ),
        "report waiting for its SMTP retry": _job(
            session, JobKind.report, JobStatus.queued, created=hour, dispatched=-timedelta(minutes=10)
        ),
        "long build, beating": _job(
            session, JobKind.build, JobStatus.running, created=hour, started=hour, heartbeat=moment
        ),
        "evaluation just started": _job(session, JobKind.evaluate, JobStatus.running, created=hour, started=moment),
        "build just re-dispatched": _job(
            session, JobKind.build, JobStatus.running, created=hour, dispatched=moment, started=hour, heartbeat=hour
        ),
        "ingest parsing its files for an hour": _job(
            session, JobKind.ingest, JobStatus.running, created=hour, started=hour, heartbeat=moment
        ),
        "finished": _job(session, JobKind.build, JobStatus.succeeded, created=hour),
        "failed": _job(session, JobKind.evaluate, JobStatus.failed, created=hour),
    }
    stale = {job.id for job in catalog.stale_jobs(session, STUCK_AFTER)}
    names = {job_id: name for name, job_id in {**lost, **alive}.items()}
    assert sorted(names[i] for i in stale) == sorted(lost)


def test_heartbeats_refresh_running_jobs_only(session: Session) -> None:
    running = _job(session, JobKind.build, JobStatus.running, created=timedelta(hours=1), started=timedelta(hours=1))
    done = _job(session, JobKind.build, JobStatus.succeeded, created=timedelta(hours=1))
    catalog.touch_jobs(session, [running, done])
    session.commit()
    assert not catalog.stale_jobs(session, STUCK_AFTER)
    beat = session.get(Job, running)
    assert beat is not None and beat.heartbeat_at is not None and utcnow() - beat.heartbeat_at < STUCK_AFTER
    finished = session.get(Job, done)
    assert finished is not None and finished.heartbeat_at is None


def test_starting_a_job_again_is_a_heartbeat(session: Session) -> None:
    """A redelivered job is alive from the moment a worker opens it, before the first beat."""
    job_id = _job(session, JobKind.report, JobStatus.running, created=timedelta(hours=1), started=timedelta(hours=1))
    job = session.get(Job, job_id)
    assert job is not None and [j.id for j in catalog.stale_jobs(session, STUCK_AFTER)]
    catalog.start_job(session, job)
    session.commit()
    assert not catalog.stale_jobs(session, STUCK_AFTER)


def test_only_one_of_two_reconcilers_claims_a_stale_job(session: Session) -> None:
    """Two reconcilers that ran at once both re-sent a dead worker's build; the two builds then
    rebuilt one Chroma collection side by side and both failed."""
    job_id = _job(session, JobKind.build, JobStatus.running, created=timedelta(hours=1), started=timedelta(hours=1))
    assert [j.id for j in catalog.stale_jobs(session, STUCK_AFTER)] == [job_id]
    assert catalog.claim_stale_job(session, job_id, STUCK_AFTER)
    session.commit()
    assert not catalog.claim_stale_job(session, job_id, STUCK_AFTER)


def test_a_job_is_alive_elsewhere_while_its_heartbeat_is_fresh(session: Session) -> None:
    hour, moment = timedelta(hours=1), timedelta(seconds=10)
    beating = _job(session, JobKind.build, JobStatus.running, created=hour, started=hour, heartbeat=moment)
    silent = _job(session, JobKind.build, JobStatus.running, created=hour, started=hour, heartbeat=hour)
    queued = _job(session, JobKind.build, JobStatus.queued, created=moment)
    jobs = {job_id: session.get(Job, job_id) for job_id in (beating, silent, queued)}
    assert {job_id for job_id, job in jobs.items() if job and catalog.alive_elsewhere(job, STUCK_AFTER)} == {beating}
