"""The query log's writer: rows are committed by a background thread, so an answer never waits for the catalog.

The thread wakes as soon as a row arrives and writes, in one transaction, every row that
queued while it wrote the previous batch: one commit at a time, batched under load. A
row is in the catalog within milliseconds of its answer; ``flush()`` waits until every
row submitted so far is written, and readers in the same process (feedback on a query
id, usage) call it first so that they see their own queries.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine, insert

from core.models import QueryLog

log = logging.getLogger(__name__)

# A Core insert with its values passed separately: compiled once, with no ORM unit of work.
_INSERT = insert(QueryLog)
MAX_BATCH = 500  # rows per transaction


class QueryLogWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._rows: list[dict[str, Any]] = []
        self._submitted = 0
        self._done = 0  # rows written (or lost to a failed write)
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None  # started on the first row (never in a process that only reads)

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one ``query_log`` row (all columns given, ``created_at`` included)."""
        with self._changed:
            if self._closed:
                raise RuntimeError("the query log writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-log-writer", daemon=True)
                self._thread.start()
            self._rows.append(row)
            self._submitted += 1
            self._changed.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row submitted before this call is written; False if ``timeout`` ran out first."""
        with self._changed:
            target = self._submitted
            return self._changed.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._rows) or self._closed)
                if not self._rows:
                    return  # closed, and everything is written
                batch, self._rows = self._rows[:MAX_BATCH], self._rows[MAX_BATCH:]
            self._write(batch)
            with self._changed:
                self._done += len(batch)
                self._changed.notify_all()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            with self._engine.begin() as connection:
                connection.execute(_INSERT, batch)
            return
        except Exception:
            if len(batch) == 1:  # the catalog is unreachable or rejects the row: answers go on
                log.exception("writing 1 query-log row failed; it is lost")
                return
        # One bad row (its collection deleted meanwhile) must not take the batch with it.
        for row in batch:
            self._write([row])
