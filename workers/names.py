"""Task and queue names: the contract between the API (which enqueues by name) and workers."""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    parse_document = "ingest.parse_document"
    build_version = "ingest.build_version"
    reconcile = "maintenance.reconcile"
    prune_query_log = "maintenance.prune_query_log"


class Queue(StrEnum):
    ingest = "ingest"
    build = "build"
    maintenance = "maintenance"


ROUTES: dict[TaskName, Queue] = {
    TaskName.parse_document: Queue.ingest,
    TaskName.build_version: Queue.build,
    TaskName.reconcile: Queue.maintenance,
    TaskName.prune_query_log: Queue.maintenance,
}


def queue_name(queue: Queue, prefix: str) -> str:
    return f"{prefix}{queue.value}"
