"""Task and queue names: the contract between the API (which enqueues by name) and workers."""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    parse_document = "ingest.parse_document"
    parse_documents = "ingest.parse_documents"  # a group of small documents (release.batches)
    ocr_document = "ingest.ocr_document"
    build_version = "ingest.build_version"
    reconcile = "maintenance.reconcile"
    prune_query_log = "maintenance.prune_query_log"
    evaluate = "eval.run"
    nightly = "eval.nightly"
    nightly_collection = "eval.nightly_collection"
    send_report = "report.send"


class Queue(StrEnum):
    ingest = "ingest"
    ocr = "ocr"  # images and scanned pages: a 300-page scan never holds up text documents
    build = "build"
    maintenance = "maintenance"
    eval = "eval"


ROUTES: dict[TaskName, Queue] = {
    TaskName.parse_document: Queue.ingest,
    TaskName.parse_documents: Queue.ingest,
    TaskName.ocr_document: Queue.ocr,
    TaskName.build_version: Queue.build,
    TaskName.reconcile: Queue.maintenance,
    TaskName.prune_query_log: Queue.maintenance,
    TaskName.evaluate: Queue.eval,
    TaskName.nightly: Queue.maintenance,
    TaskName.nightly_collection: Queue.eval,
    TaskName.send_report: Queue.maintenance,
}


def queue_name(queue: Queue, prefix: str) -> str:
    return f"{prefix}{queue.value}"
