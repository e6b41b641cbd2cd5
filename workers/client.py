"""Enqueue tasks by name: the Celery side of ``release.dispatch.Enqueue`` (API and workers).

Callers commit the catalog first and enqueue after (``release.dispatch``): a job row always
exists before its message does, and the beat reconciler re-dispatches any job whose message was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from celery import Celery

from core import logs
from core.settings import Settings
from release.dispatch import Step
from workers.app import create_celery
from workers.names import ROUTES, Queue, TaskName, queue_name

if TYPE_CHECKING:
    from kombu.transport.virtual import Channel

log = logging.getLogger(__name__)

STEP_TASKS: dict[Step, TaskName] = {
    Step.parse: TaskName.parse_document,
    Step.parse_group: TaskName.parse_documents,
    Step.ocr: TaskName.ocr_document,
    Step.build: TaskName.build_version,
    Step.evaluate: TaskName.evaluate,
    Step.report: TaskName.send_report,
}


class TaskClient:
    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self.settings = settings
        self.celery = celery or create_celery(settings)

    def send(self, task: TaskName, args: Sequence[str | list[str]], countdown: float | None = None) -> bool:
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

    def enqueue(self, step: Step, arg: str | list[str], countdown: float | None = None) -> bool:
        """``release.dispatch.Enqueue``: send a lifecycle step as its task."""
        return self.send(STEP_TASKS[step], [arg], countdown=countdown)

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each of ragkeep's queues (not counting those a worker holds)."""
        depths: dict[str, int] = {}
        with self.celery.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            # Both of ragkeep's brokers (Redis, SQLAlchemy) are kombu virtual transports: their channels declare queues.
            channel = cast("Channel", conn.default_channel)
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
