"""The query log's background writer, on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select

from core.config import CollectionConfig
from core.db import Database
from core.models import QueryLog, new_id, utcnow
from query import querylog
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
    # A row of a collection deleted meanwhile is an expected loss: a warning, no traceback.
    refused = [r for r in caplog.records if "refused by the catalog" in r.getMessage()]
    assert len(refused) == 2 and all(r.levelno == logging.WARNING and not r.exc_info for r in refused)
    writer.close()


def test_an_unreachable_catalog_loses_the_row_with_an_error_and_answers_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = QueryLogWriter(create_engine(f"sqlite:///{tmp_path / 'missing' / 'catalog.sqlite'}"))
    writer.submit(_row("any", "lost"))
    assert writer.flush(timeout=30)
    writer.close()
    failures = [r for r in caplog.records if "query-log row failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR and failures[0].exc_info


def test_a_writer_that_never_wrote_starts_no_thread(db: Database) -> None:
    before = threading.active_count()
    writer = QueryLogWriter(db.engine)
    assert writer.flush(timeout=1)
    writer.close()
    assert threading.active_count() == before
    with db.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(QueryLog)) == 0


def test_rows_arriving_one_by_one_share_commits(db: Database, collection_id: str) -> None:
    """At a few queries a second, rows linger briefly so that several share one transaction."""
    commits = 0

    def count(_connection: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(db.engine, "commit", count)
    writer = QueryLogWriter(db.engine)
    try:
        for i in range(20):  # one row every 2 ms: without the linger, nearly every row is its own commit
            writer.submit(_row(collection_id, f"q{i}"))
            time.sleep(0.002)
        assert writer.flush(timeout=30)
    finally:
        writer.close()
        event.remove(db.engine, "commit", count)
    assert len(_logged(db)) == 20
    assert commits <= 5


def test_flush_does_not_wait_out_the_linger(db: Database, collection_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(querylog, "LINGER_SECONDS", 3600.0)  # a flush that waited for it would time out
    writer = QueryLogWriter(db.engine)
    writer.submit(_row(collection_id, "first"))
    assert writer.flush(timeout=30)
    writer.submit(_row(collection_id, "second"))  # the linger is back after a flush
    assert writer.flush(timeout=30)
    writer.submit(_row(collection_id, "third"))
    writer.close(timeout=30)  # so is close
    assert _logged(db) == ["first", "second", "third"]
