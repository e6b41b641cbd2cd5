"""The query log's background writer, on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from core.config import CollectionConfig
from core.db import Database
from core.models import QueryLog, new_id, utcnow
from query.querylog import QueryLogWriter


@pytest.fixture
def collection_id(db: Database) -> str:
    from core import catalog

    with db.session() as session:
        collection = catalog.create_collection(session, "logged", "", [], CollectionConfig())
        session.commit()
        return collection.id


def _row(collection_id: str, question: str = "Where is the office?") -> dict[str, Any]:
    return dict(
        id=new_id(),
        created_at=utcnow(),
        collection_id=collection_id,
        version_number=1,
        question=question,
        mode="retrieve",
        answer_mode="none",
        answer="",
        chunk_ids=["c1", "c2"],
        cited_chunk_ids=["c1", "c2"],
        usage={"embedding_tokens": 5, "cost": 0.0},
        latency_ms={"total": 3.0},
        warnings=[],
        model=None,
        prompt_revision=0,
        cost=0.0,
        client="test",
    )


def _logged(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.scalars(select(QueryLog.question).order_by(QueryLog.created_at)))


def test_rows_from_many_threads_are_all_written_by_flush_time(db: Database, collection_id: str) -> None:
    writer = QueryLogWriter(db.engine)
    threads = [
        threading.Thread(target=lambda n=n: [writer.submit(_row(collection_id, f"q{n}-{i}")) for i in range(25)])
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(timeout=30)
    assert sorted(_logged(db)) == sorted(f"q{n}-{i}" for n in range(8) for i in range(25))
    writer.close()


def test_close_writes_what_is_queued_and_refuses_more(db: Database, collection_id: str) -> None:
    writer = QueryLogWriter(db.engine)
    for i in range(40):
        writer.submit(_row(collection_id, f"q{i}"))
    writer.close()
    assert len(_logged(db)) == 40
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(_row(collection_id))


def test_a_failed_batch_is_reported_and_later_rows_still_land(
    db: Database, collection_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = QueryLogWriter(db.engine)
    writer.submit(_row("no-such-collection", "orphan"))  # the foreign key rejects it
    assert writer.flush(timeout=30), "a failed write does not leave flush() waiting"
    writer.submit(_row(collection_id, "kept"))
    assert writer.flush(timeout=30)
    # In one batch, the bad row is lost alone.
    rows = [_row(collection_id, "before"), _row("no-such-collection", "orphan"), _row(collection_id, "after")]
    writer._write(rows)
    assert sorted(_logged(db)) == ["after", "before", "kept"]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "query-log row failed" in r.getMessage()]
    assert len(failures) == 2
    writer.close()


def test_a_writer_that_never_wrote_starts_no_thread(db: Database) -> None:
    before = threading.active_count()
    writer = QueryLogWriter(db.engine)
    assert writer.flush(timeout=1)
    writer.close()
    assert threading.active_count() == before
    with db.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(QueryLog)) == 0
