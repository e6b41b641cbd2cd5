"""Which catalog errors mean "overloaded, retry" (a 503 with Retry-After) rather than a bug (a 500)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.db import OVERLOAD_ERRORS, overloaded


def test_a_write_lock_not_granted_in_time_is_overload(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    holder, waiter = create_engine(url), create_engine(url, connect_args={"timeout": 0})
    with holder.connect() as held, waiter.connect() as waiting:
        held.execute(text("CREATE TABLE t (x INTEGER)"))
        held.commit()
        held.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock until commit
        with pytest.raises(OperationalError) as locked:
            waiting.execute(text("INSERT INTO t VALUES (2)"))
    unavailable = overloaded(locked.value)
    assert unavailable is not None and unavailable.status_code == 503 and unavailable.retry_after > 0
    assert isinstance(locked.value, OVERLOAD_ERRORS)


def test_no_free_connection_in_time_is_overload(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'catalog.sqlite'}", pool_size=1, max_overflow=0, pool_timeout=0.1)
    with engine.connect(), pytest.raises(PoolTimeout) as exhausted:
        engine.connect()
    unavailable = overloaded(exhausted.value)
    assert unavailable is not None and unavailable.status_code == 503


def test_other_operational_errors_stay_errors(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with engine.connect() as conn, pytest.raises(OperationalError) as missing:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert overloaded(missing.value) is None
    assert overloaded(ValueError("not a catalog error")) is None
