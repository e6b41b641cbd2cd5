"""Builds: one pending build per collection, one running build per collection, and the build itself.

The rule, in one place:

- changes (an upload parsed, a document deleted) *request* a build: the collection's one
  pending build job is created and sent, or, if one is pending already, that one absorbs the
  change (``request_build``); a build started by hand always builds (``start_manual_build``);
- a build that starts while another build of its collection is running does not run: it
  stays queued and pending (so changes keep joining it) and waits (``may_start``);
- a build that ends, however it ends, sends the builds of its collection that wait (``start_waiting``);
- a build whose worker died stops beating: it holds nothing up, and the reconciler sends
  every stale job again, a waiting build included, so no build waits forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from core import catalog
from core import chroma as chroma_access
from core.models import BuildTrigger, Collection, Job, JobKind, JobStatus, Version, VersionState, utcnow
from ingest.pipeline import BuildResult
from release import publish
from release.dispatch import Audit, Enqueue, Step, dispatch
from release.gate import start_gate

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# Materialises a version (``ingest.pipeline.build_version`` with the worker's Chroma client, blobs, embedder, parser).
Materialise = Callable[[Session, Collection, Version, Progress], BuildResult]
# Drops one physical Chroma collection by name.
DropCollection = Callable[[str], object]


@dataclass(frozen=True)
class BuildTools:
    materialise: Materialise
    drop: DropCollection
    enqueue: Enqueue
    stuck_after: timedelta  # a running build without a heartbeat for this long lost its worker


@dataclass(frozen=True)
class BuildOutcome:
    """What a build job ended with (also its ``job.result``)."""

    version: int | None
    state: VersionState | None = None
    chunk_count: int = 0
    dropped_versions: tuple[int, ...] = ()
    build_seconds: float | None = None
    detail: str | None = None

    def as_result(self) -> dict[str, object]:
        if self.version is None:
            return {"version": None, "detail": self.detail}
        if self.state == VersionState.failed:
            return {"version": self.version, "state": self.state}
        return {
            "version": self.version,
            "state": self.state,
            "chunk_count": self.chunk_count,
            "dropped_versions": list(self.dropped_versions),
        }


# ----------------------------------------------------------------- scheduling


def request_build(session: Session, collection_id: str, enqueue: Enqueue, countdown: float | None = None) -> str | None:
    """Schedule a build of the collection's next version unless one is already pending.

    Returns the id of the build job that will include the current documents.
    """
    job = catalog.claim_build(session, collection_id)
    if job is None:
        session.commit()
        collection = catalog.get_collection_by_id(session, collection_id)
        if collection is None:
            return None
        session.refresh(collection)  # the claim is a bulk UPDATE: a loaded row does not show it
        return collection.pending_build_job_id
    job.trigger = BuildTrigger.change
    catalog.mark_dispatched(session, [job.id], delay_s=countdown or 0.0)
    session.commit()
    enqueue(Step.build, job.id, countdown)
    return job.id


def start_manual_build(session: Session, collection: Collection, enqueue: Enqueue, audit: Audit) -> Job:
    """A build by hand: built even if nothing changed."""
    job = catalog.create_job(session, JobKind.build, collection.id)
    job.trigger = BuildTrigger.manual
    dispatch(session, enqueue, job, Step.build, job.id, audit)
    return job


def may_start(session: Session, job: Job, stuck_after: timedelta) -> bool:
    """False when ``job`` must wait for another running build of its collection (committed as waiting).

    The waiting job stays queued; the running build sends it when it ends (``start_waiting``).
    It is marked dispatched now, so the reconciler leaves it alone for ``stuck_after`` and
    then sends it again: should the running build's worker die, the wait ends all the same.
    """
    if job.status != JobStatus.queued:
        return True
    alive_after = utcnow() - stuck_after
    if catalog.other_running_build(session, job, alive_after) is None:
        return True
    catalog.mark_dispatched(session, [job.id])
    session.commit()
    log.info("build %s waits for the running build of its collection", job.id)
    return False


def start_waiting(session: Session, collection_id: str, enqueue: Enqueue) -> list[str]:
    """A build of the collection ended: send the builds that wait for it (the first to run takes over)."""
    waiting = catalog.waiting_builds(session, collection_id)
    if waiting:
        catalog.mark_dispatched(session, waiting)
        session.commit()
    for job_id in waiting:
        enqueue(Step.build, job_id)
    return waiting


# ------------------------------------------------------------------- building


def build(session: Session, job: Job, collection: Collection, tools: BuildTools) -> BuildOutcome:
    """Build the collection's next version for an opened build job, then publish, gate and retain as configured.

    Raises what materialising raised (the caller decides retry or ``fail``); a redelivered
    job finds its version built and carries on from there.
    """
    catalog.release_build(session, collection.id, job.id)
    session.commit()
    if job.trigger != BuildTrigger.manual and unchanged(session, collection):
        outcome = BuildOutcome(version=None, detail="no document changed")
        return _finish(session, job, collection, outcome, tools.enqueue)
    version = catalog.version_for_job(session, job.id) or catalog.create_version(
        session, collection, job.id, chroma_access.version_collection_name
    )
    if version.state == VersionState.building:  # else redelivered after the build was recorded
        built = tools.materialise(session, collection, version, _progress_recorder(session, job))
        session.commit()
        log.info(
            "materialised %s v%d: %d documents, %d chunks (%d embedded, %d reused), %d files skipped",
            collection.name,
            version.number,
            built.document_count,
            built.chunk_count,
            built.embedded,
            built.reused,
            len(built.skipped),
            extra={"collection": collection.name, "version": version.number},
        )
    config = catalog.collection_config(collection)
    if config.publish_policy == "auto":
        publish.publish_if_newest(session, collection, version)
    elif config.publish_policy == "gated":
        start_gate(session, collection, version, tools.enqueue)
    dropped = publish.apply_retention(session, collection, config.keep_versions, tools.drop)
    session.refresh(version)
    log.info(
        "built %s v%d: %d chunks in %.1f s, %s",
        collection.name,
        version.number,
        version.chunk_count,
        version.build_seconds or 0.0,
        version.state,
        extra={"collection": collection.name, "version": version.number},
    )
    outcome = BuildOutcome(
        version.number, VersionState(version.state), version.chunk_count, tuple(dropped), version.build_seconds
    )
    return _finish(session, job, collection, outcome, tools.enqueue)


def fail(session: Session, job_id: str, error: str, tools: BuildTools) -> BuildOutcome:
    """Record a build that cannot finish: its version failed (its vectors dropped), its job failed."""
    job = session.get(Job, job_id)
    if job is None:
        return BuildOutcome(version=None, detail=error)
    version = catalog.version_for_job(session, job.id)
    if version is None:  # failed before its version existed
        catalog.finish_job(session, job, error=error)
        session.commit()
        return _finish(session, job, None, BuildOutcome(None, VersionState.failed, detail=error), tools.enqueue)
    tools.drop(version.chroma_collection)
    version.state = VersionState.failed
    version.error = error
    version.dropped_at = utcnow()
    outcome = BuildOutcome(version.number, VersionState.failed, detail=error)
    catalog.finish_job(session, job, error=f"version {version.number}: {error}", result=outcome.as_result())
    session.commit()
    return _finish(session, job, None, outcome, tools.enqueue)


def _finish(
    session: Session, job: Job, collection: Collection | None, outcome: BuildOutcome, enqueue: Enqueue
) -> BuildOutcome:
    if collection is not None:
        catalog.finish_job(session, job, result=outcome.as_result())
        session.commit()
    if job.collection_id:
        start_waiting(session, job.collection_id, enqueue)
    return outcome


def _progress_recorder(session: Session, job: Job) -> Progress:
    """Progress recorded at most once a second (a commit per document would slow big builds down)."""
    last_commit = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_commit
        if done < total and time.monotonic() - last_commit < 1.0:
            return
        last_commit = time.monotonic()
        job.progress_done, job.progress_total = done, total
        session.commit()

    return progress


def unchanged(session: Session, collection: Collection) -> bool:
    """True when a build would repeat the newest version (or, with no version yet, hold nothing)."""
    current = {doc.id: rev.id for doc, rev in catalog.buildable_revisions(session, collection.id)}
    states = [VersionState.live, VersionState.ready, VersionState.archived]
    latest = catalog.latest_version(session, collection.id, states)
    if latest is None:
        return not current  # every document of the first upload failed: no empty version
    # Compared as stored (JSON): a tuple in the model is a list in the row.
    if latest.config != catalog.collection_config(collection).ingestion.model_dump(mode="json"):
        return False
    built = {vd.document_id: vd.revision_id for vd in catalog.version_documents(session, latest)}
    return built == current
