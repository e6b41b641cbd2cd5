"""Heartbeats of running jobs: how the reconciler tells a dead worker's jobs from slow ones.

A worker process that runs a build, an evaluation or a report refreshes the job's
``heartbeat_at`` from a background thread. When the process dies (``kill -9``, OOM, a lost
host) the heartbeat stops, and after ``RAGKEEP_WORKER__STUCK_AFTER_S`` the reconciler
dispatches the job again; a long build that is still alive is left alone.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from core import catalog
from core.db import Database

log = logging.getLogger(__name__)


def interval_s(stuck_after_s: float) -> float:
    """Several beats fit in the reconciler's window, so one slow commit does not make a job look lost."""
    return max(1.0, min(30.0, stuck_after_s / 5))


class Heartbeat:
    """Refreshes the heartbeat of the jobs this process is running, every ``interval`` seconds."""

    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._jobs: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def running(self, job_id: str | None) -> Iterator[None]:
        """Beat for ``job_id`` while the block runs (nested blocks for one job are counted; None: no job)."""
        if job_id is None:
            yield
            return
        with self._lock:
            self._jobs[job_id] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ragkeep-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._jobs[job_id] -= 1
                if self._jobs[job_id] <= 0:
                    del self._jobs[job_id]

    def beat(self) -> None:
        with self._lock:
            job_ids = list(self._jobs)
        if not job_ids:
            return
        with self.db.session() as session:
            catalog.touch_jobs(session, job_ids)
            session.commit()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # the catalog briefly unreachable: the next beat may get through
                log.warning("job heartbeat failed: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
