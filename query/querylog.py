"""The query log's writer: rows are committed by a background thread, so an answer never waits for the catalog.

When a row arrives the thread lingers for ``LINGER_SECONDS``, then writes every queued
row in one transaction. A commit of its own cost each query about 0.6 ms of the API's
CPU at one query in flight; lingering shares it among the rows of a tenth of a second.
A row is in the catalog within that time of its answer (and that is what a killed
process can lose). ``flush()`` cuts the linger short and waits until every row submitted
so far is written; readers in the same process (feedback on a query id, usage, deleting
a collection) call it first so that they see their own queries.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from core import catalog

log = logging.getLogger(__name__)

MAX_BATCH = 500  # rows per transaction
LINGER_SECONDS = 0.1  # how long the first queued row waits for others to share its commit


class QueryLogWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._rows: list[dict[str, Any]] = []
        self._submitted = 0
        self._done = 0  # rows written (or lost to a failed write)
        self._closed = False
        self._flushing = 0  # callers waiting in flush()
        self._changed = threading.Condition()
        self._hurry = threading.Event()  # set while someone waits: no lingering
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
            self._flushing += 1
            self._hurry.set()
            try:
                return self._changed.wait_for(lambda: self._done >= target, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._changed:
            self._closed = True
            self._hurry.set()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._rows) or self._closed)
                full = len(self._rows) >= MAX_BATCH
            if not full:
                self._hurry.wait(LINGER_SECONDS)  # not on the condition: each submit would wake it
            with self._changed:
                if not self._rows:
                    return  # closed, and everything is written
                batch, self._rows = self._rows[:MAX_BATCH], self._rows[MAX_BATCH:]
                if not self._flushing and not self._closed:
                    self._hurry.clear()
            self._write(batch)
            with self._changed:
                self._done += len(batch)
                self._changed.notify_all()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            with self._engine.begin() as connection:
                catalog.insert_query_log_rows(connection, batch)
            return
        except IntegrityError as exc:
            if len(batch) == 1:  # its collection was deleted by another process meanwhile
                log.warning("a query-log row was refused by the catalog and is lost: %s", exc.orig)
                return
        except Exception:
            if len(batch) == 1:  # the catalog is unreachable: answers go on
                log.exception("writing 1 query-log row failed; it is lost")
                return
        # One bad row (its collection deleted meanwhile) must not take the batch with it.
        for row in batch:
            self._write([row])
