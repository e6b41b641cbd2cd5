"""Shared fixtures. Every test runs behind a network guard: only loopback connections work."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from core.db import Database
    from tests.s3server import S3Server

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS / "netguard"))
import sitecustomize  # noqa: E402  (installs the guard in this process too)

sitecustomize.install()

from bench.datasets import DATASETS  # noqa: E402  (one place resolves the datasets, RAGKEEP_DATASETS included)

EXAMPLE_DOCS = DATASETS / "unstructured-example-docs" / "files"
PG_ADMIN_URL = os.environ.get("RAGKEEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RAGKEEP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.fail(f"datasets folder {DATASETS} is missing (set RAGKEEP_DATASETS)")
    return DATASETS


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"ragkeep_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each catalog test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated, empty catalog on each backend; its tables are dropped afterwards."""
    from sqlalchemy import text

    from core.db import Database, create_schema
    from core.models import Base

    database = Database(database_url)
    create_schema(database.engine)
    yield database
    Base.metadata.drop_all(database.engine)
    with database.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    database.dispose()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) for the session."""
    from tests.processes import start_chroma, stop

    process, url = start_chroma(tmp_path_factory.mktemp("chroma"))
    yield url
    stop(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible object store (SeaweedFS) for the session; each test makes its own bucket."""
    from tests.s3server import start_seaweedfs

    process, server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    process.kill()  # a throwaway store: SIGTERM would wait ~15 s for its parts to hand over
    process.wait()
