"""What the lifecycle tests share: a real SQLite catalog, and an ``Enqueue`` that records what it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from core.db import Database, create_schema
from release.dispatch import Step


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
