"""Enqueue tasks by name. Used by the API and by tasks that schedule follow-up work.

Callers commit the catalog first and enqueue after: a job row always exists before its
message does, and the beat reconciler re-dispatches any job whose message was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery
from sqlalchemy.orm import Session

from core import catalog, logs
from core.settings import Settings
from workers.app import create_celery
from workers.names import ROUTES, Queue, TaskName, queue_name

log = logging.getLogger(__name__)


class TaskClient:
    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self.settings = settings
        self.celery = celery or create_celery(settings)

    def send(self, task: TaskName, args: Sequence[str], countdown: float | None = None) -> bool:
        """Send one task; a broker outage is logged, not raised (the reconciler retries).

        The current request id travels in the message headers (see ``core.logs``).
        """
        request_id = logs.request_id.get()
        try:
            self.celery.send_task(
                task.value,
                args=list(args),
                headers={"request_id": request_id} if request_id else None,
                queue=queue_name(ROUTES[task], self.settings.queue_prefix),
                countdown=countdown,
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
            )
            return True
        except Exception:  # kombu raises transport-specific errors
            log.exception("could not enqueue %s%s; the reconciler will retry", task.value, list(args))
            return False

    def parse_revisions(self, session: Session, job_id: str, revision_ids: Sequence[str]) -> bool:
        """Commit the job as dispatched, then send one parse task per revision; False if any was not sent."""
        catalog.mark_dispatched(session, [job_id])
        session.commit()
        return all([self.send(TaskName.parse_document, [revision_id]) for revision_id in revision_ids])

    def request_build(self, session: Session, collection_id: str, countdown: float | None = None) -> str | None:
        """Schedule a build of the collection's next version unless one is already pending.

        Returns the id of the build job that will include the current documents.
        """
        job = catalog.claim_build(session, collection_id)
        if job is None:
            session.commit()
            collection = catalog.get_collection_by_id(session, collection_id)
            return collection.pending_build_job_id if collection else None
        catalog.mark_dispatched(session, [job.id])
        session.commit()
        self.send(TaskName.build_version, [job.id], countdown=countdown)
        return job.id

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each of ragkeep's queues (not counting those a worker holds)."""
        depths: dict[str, int] = {}
        with self.celery.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            channel = conn.default_channel
            for queue in Queue:
                name = queue_name(queue, self.settings.queue_prefix)
                try:
                    _, depths[name], _ = channel.queue_declare(queue=name, passive=True)
                except conn.channel_errors:  # a queue nobody has used yet does not exist
                    depths[name] = 0
        return depths

    def ping(self) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)

    def close(self) -> None:
        self.celery.close()
