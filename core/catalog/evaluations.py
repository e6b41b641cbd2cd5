"""Golden sets and evaluation runs repository."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.catalog._numbering import add_numbered
from core.errors import NotFound
from core.models import Collection, EvalResult, EvalRun, GoldenItem, GoldenSet, Job, JobStatus, Version


def create_golden_set(
    session: Session, collection: Collection, filename: str, source_format: str, items: Sequence[dict[str, Any]]
) -> GoldenSet:
    """Store a new golden-set revision (numbers are per collection; retried on a race)."""

    def build(revision: int) -> GoldenSet:
        golden = GoldenSet(
            collection_id=collection.id,
            revision=revision,
            filename=filename,
            source_format=source_format,
            item_count=len(items),
        )
        golden.items = [GoldenItem(position=i, **item) for i, item in enumerate(items)]
        return golden

    return add_numbered(session, GoldenSet.revision, GoldenSet.collection_id, collection.id, build)


def list_golden_sets(session: Session, collection: Collection) -> Sequence[GoldenSet]:
    return session.scalars(
        select(GoldenSet).where(GoldenSet.collection_id == collection.id).order_by(GoldenSet.revision.desc())
    ).all()


def create_eval_run(
    session: Session, collection: Collection, version: Version, golden: GoldenSet, trigger: str, job: Job
) -> EvalRun:
    run = EvalRun(
        collection_id=collection.id,
        version_id=version.id,
        version_number=version.number,
        golden_set_id=golden.id,
        golden_revision=golden.revision,
        job_id=job.id,
        trigger=trigger,
    )
    session.add(run)
    session.flush()
    return run


def eval_run_missing(run_id: str) -> NotFound:
    """What an unknown evaluation id answers (also for one the caller may not see)."""
    return NotFound(f"evaluation {run_id!r} does not exist")


def eval_run_for_job(session: Session, job_id: str) -> EvalRun | None:
    return session.scalar(select(EvalRun).where(EvalRun.job_id == job_id))


def get_eval_run(session: Session, run_id: str) -> EvalRun:
    run = session.get(EvalRun, run_id)
    if run is None:
        raise eval_run_missing(run_id)
    return run


def list_eval_runs(
    session: Session, collection: Collection, offset: int = 0, limit: int = 100, version_number: int | None = None
) -> tuple[Sequence[EvalRun], int]:
    where = [EvalRun.collection_id == collection.id]
    if version_number is not None:
        where.append(EvalRun.version_number == version_number)
    total = session.scalar(select(func.count()).select_from(EvalRun).where(*where)) or 0
    items = session.scalars(
        select(EvalRun).where(*where).order_by(EvalRun.created_at.desc()).offset(offset).limit(limit)
    ).all()
    return items, total


def latest_eval_run(session: Session, version: Version, golden_set_id: str | None = None) -> EvalRun | None:
    query = select(EvalRun).where(EvalRun.version_id == version.id, EvalRun.status == JobStatus.succeeded)
    if golden_set_id is not None:
        query = query.where(EvalRun.golden_set_id == golden_set_id)
    return session.scalar(query.order_by(EvalRun.created_at.desc()).limit(1))


def succeeded_eval_runs(session: Session, collection_id: str, limit: int) -> Sequence[EvalRun]:
    """The collection's newest ``limit`` succeeded evaluation runs, newest first."""
    return session.scalars(
        select(EvalRun)
        .where(EvalRun.collection_id == collection_id, EvalRun.status == JobStatus.succeeded)
        .order_by(EvalRun.created_at.desc())
        .limit(limit)
    ).all()


def previous_eval_run(session: Session, run: EvalRun) -> EvalRun | None:
    """The newest succeeded run of ``run``'s version created before it."""
    return session.scalar(
        select(EvalRun)
        .where(
            EvalRun.version_id == run.version_id,
            EvalRun.status == JobStatus.succeeded,
            EvalRun.created_at < run.created_at,
        )
        .order_by(EvalRun.created_at.desc())
        .limit(1)
    )


def latest_eval_run_of_version(session: Session, version_id: str, golden_set_id: str) -> EvalRun | None:
    """The newest succeeded run of the version ``version_id`` on the golden set ``golden_set_id``."""
    return session.scalar(
        select(EvalRun)
        .where(
            EvalRun.version_id == version_id,
            EvalRun.golden_set_id == golden_set_id,
            EvalRun.status == JobStatus.succeeded,
        )
        .order_by(EvalRun.created_at.desc())
        .limit(1)
    )


def golden_items(session: Session, golden_set_id: str) -> Sequence[GoldenItem]:
    """The golden set's questions in their order."""
    return session.scalars(
        select(GoldenItem).where(GoldenItem.golden_set_id == golden_set_id).order_by(GoldenItem.position)
    ).all()


def golden_set_revision(session: Session, collection_id: str, revision: int | None) -> GoldenSet | None:
    """The collection's golden set ``revision`` (None: the newest one)."""
    query = select(GoldenSet).where(GoldenSet.collection_id == collection_id)
    if revision is not None:
        query = query.where(GoldenSet.revision == revision)
    return session.scalar(query.order_by(GoldenSet.revision.desc()).limit(1))


def eval_results(session: Session, run_id: str) -> Sequence[EvalResult]:
    """The run's per-question rows, in the golden set's order."""
    return session.scalars(select(EvalResult).where(EvalResult.run_id == run_id).order_by(EvalResult.position)).all()


def clear_eval_results(session: Session, run_id: str) -> None:
    """Delete the run's per-question rows: a retried run starts clean."""
    session.execute(delete(EvalResult).where(EvalResult.run_id == run_id))


def latest_run_metrics(session: Session) -> Sequence[tuple[str, int, dict[str, Any]]]:
    """(collection name, version number, metrics) of every version's newest succeeded evaluation run."""
    latest = (
        select(EvalRun.version_id, func.max(EvalRun.created_at).label("at"))
        .where(EvalRun.status == JobStatus.succeeded)
        .group_by(EvalRun.version_id)
        .subquery()
    )
    return (
        session.execute(
            select(Collection.name, EvalRun.version_number, EvalRun.metrics)
            .join(latest, (latest.c.version_id == EvalRun.version_id) & (latest.c.at == EvalRun.created_at))
            .join(Collection, Collection.id == EvalRun.collection_id)
        )
        .tuples()
        .all()
    )
