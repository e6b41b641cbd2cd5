"""What the lifecycle tests share: a real SQLite catalog, an ``Enqueue`` that records what it is sent,
and a gated collection with recorded evaluation runs for the gate's tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core import catalog
from core.config import CollectionConfig
from core.db import Database, create_schema
from core.models import Collection, EvalResult, EvalRun, EvalTrigger, JobKind, JobStatus, Version, VersionState
from release.dispatch import Step
from release.evaluations import EvalTools

# What gate.decide needs of the evaluation tools when the runs are already recorded.
GATE_TOOLS = EvalTools(engine=None, scorer=None, bootstrap_samples=200, running=lambda job_id: nullcontext())  # type: ignore[arg-type]


class Sent:
    """An ``Enqueue`` that records each step it is given."""

    def __init__(self) -> None:
        self.steps: list[tuple[Step, str, float | None]] = []

    def __call__(self, step: Step, arg: str, countdown: float | None = None) -> bool:
        self.steps.append((step, arg, countdown))
        return True


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    db = Database(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    create_schema(db.engine)
    with db.session() as s:
        yield s
    db.dispose()


def gated_collection(
    session: Session, name: str, gate_limits: Mapping[str, float]
) -> tuple[Collection, Version, Version]:
    """A ``gated`` collection with two ready versions, the first of them live: (collection, live, candidate)."""
    config = CollectionConfig.model_validate({"publish_policy": "gated", "evaluation": {"gate": dict(gate_limits)}})
    collection = catalog.create_collection(session, name, "", [], config)
    versions = []
    for _ in range(2):
        job = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, job.id, lambda name, n: f"rk_{name}_v{n}")
        version.state = VersionState.ready
        versions.append(version)
    session.flush()
    catalog.publish(session, collection, versions[0])
    session.commit()
    return collection, versions[0], versions[1]


def recorded_run(
    session: Session,
    collection: Collection,
    version: Version,
    scores: Sequence[dict[str, Any]],
    trigger: EvalTrigger,
) -> EvalRun:
    """A succeeded evaluation run of ``version`` with one question per entry of ``scores`` (its metric scores)."""
    golden = catalog.list_golden_sets(session, collection)
    golden_set = (
        golden[0]
        if golden
        else catalog.create_golden_set(
            session, collection, "g.jsonl", "jsonl", [{"question": f"q{i}?"} for i in range(len(scores))]
        )
    )
    job = catalog.create_job(session, JobKind.evaluate, collection.id)
    run = catalog.create_eval_run(session, collection, version, golden_set, trigger, job)
    for position, question_scores in enumerate(scores):
        session.add(EvalResult(run_id=run.id, position=position, question=f"q{position}?", scores=question_scores))
    run.status = JobStatus.succeeded
    session.commit()
    return run
