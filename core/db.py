"""SQLAlchemy engine and sessions for the catalog (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ServiceUnavailable


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Several processes (API, workers, beat) share the file: WAL lets readers run during
    # writes, and the busy timeout turns lock contention into waiting instead of errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# FastAPI runs sync routes and dependencies in AnyIO's thread pool of 40 threads. A request
# keeps its session's connection from one thread hop to the next (dependency, route, response),
# so with fewer connections than that a burst parks every thread on the pool while the
# requests holding the connections wait for a thread: nothing moves until the pool timeout.
API_THREADS = 40


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # No cap on connections: a SQLite connection is an open file, there is no server to
        # protect, and any cap below the requests in flight can stall a burst as above.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10, max_overflow=-1
        )
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    # PostgreSQL's connections are a server-wide budget (max_connections): as many as the
    # threads that can use them; beyond that a request waits 10 s at most, then gets a 503.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=API_THREADS - 10, pool_timeout=10)


MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_ID = 0x7261676B  # "ragk": PostgreSQL advisory lock serialising concurrent upgrades


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """API, workers and beat may start together: only one of them migrates at a time."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database:
        with FileLock(f"{engine.url.database}.migrate.lock"):
            yield
    else:
        yield


def create_schema(engine: Engine) -> None:
    """Bring the catalog schema to the newest Alembic revision (creates it on first start)."""
    with _migration_lock(engine), engine.begin() as connection:
        alembic_command.upgrade(_alembic_config(connection), "head")


# What a catalog too busy to answer in time raises (not a broken one): the API answers 503.
OVERLOAD_ERRORS: tuple[type[Exception], ...] = (PoolTimeout, OperationalError)
# PostgreSQL: too_many_connections, lock_not_available, query_canceled (a statement or lock timeout).
_PG_OVERLOAD = frozenset({"53300", "55P03", "57014"})


def overloaded(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 to answer for ``exc`` if it means the catalog is overloaded, else None (a real error)."""
    if isinstance(exc, PoolTimeout):
        return ServiceUnavailable("the catalog has no free connection: too many requests at once; retry shortly")
    if isinstance(exc, OperationalError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in _PG_OVERLOAD or "database is locked" in str(exc.orig):
            return ServiceUnavailable(
                "the catalog is too busy to answer in time (a lock was not granted); retry shortly"
            )
    return None


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


class Database:
    """An engine plus its session factory; one per process."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
