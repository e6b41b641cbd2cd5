"""What a worker tells the operator: JSON logs with the request id, and Prometheus metrics.

Metrics are recorded in the prefork children (where tasks run) into the files of
``PROMETHEUS_MULTIPROC_DIR``, which ``ragkeep worker`` sets to a fresh folder per worker
before anything imports ``prometheus_client``; the main worker process serves their sum
on ``RAGKEEP_WORKER__METRICS_PORT``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Task
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
)
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

from core import cputime, logs
from core.settings import get_settings

log = logging.getLogger(__name__)

TASKS = Counter("ragkeep_worker_tasks_total", "Tasks finished by the worker", ["task", "outcome"])
TASK_SECONDS = Histogram(
    "ragkeep_worker_task_seconds",
    "Task run time",
    ["task"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
DOCUMENTS = Counter("ragkeep_documents_parsed_total", "Document revisions parsed", ["outcome"])
CHUNKS_EMBEDDED = Counter("ragkeep_chunks_embedded_total", "Texts through the embedding model (cache hits not)")
EMBEDDING_SECONDS = Counter("ragkeep_embedding_seconds_total", "Time spent in the embedding model")
BUILDS = Counter("ragkeep_version_builds_total", "Version builds", ["outcome"])
BUILD_SECONDS = Histogram(
    "ragkeep_version_build_seconds",
    "Version build time",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

# CPU seconds of the prefork processes by phase (core/cputime.py): what a chunk costs besides the model.
WORKER_CPU = Counter(
    "ragkeep_worker_cpu_seconds_total",
    "CPU time of the worker's task processes (and their parse helpers) by phase",
    ["phase"],
)
# The task bodies' CPU outside every named phase: mostly catalog reads and writes (SQL and the ORM).
TASK_REST = "catalog and task code"
# The process's CPU between task bodies: Celery taking the message, signals, acks, the heartbeat thread.
BETWEEN_TASKS = "celery (around tasks)"

_started: dict[str, float] = {}
_cpu_started: dict[str, float] = {}
_cpu_mark: list[float | None] = [None]  # process CPU at the end of its previous task (None: none yet)


def embedded(texts: int, seconds: float) -> None:
    CHUNKS_EMBEDDED.inc(texts)
    EMBEDDING_SECONDS.inc(seconds)


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Connected, so Celery leaves logging to us: worker and beat log like the API."""
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)


@task_prerun.connect
def _task_started(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    logs.request_id.set(task.request.get("request_id"))
    logs.task_context.set({"task": task.name, "task_id": task_id})
    _started[task_id] = time.perf_counter()
    _cpu_started[task_id] = time.process_time()
    cputime.drain()  # phases from outside a task (a warm-up) are not this task's


@task_postrun.connect
def _task_finished(task_id: str, task: Task[Any, Any], state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)
    _count_cpu(_cpu_started.pop(task_id, None))
    if state in ("SUCCESS", "FAILURE"):
        TASKS.labels(task.name, "succeeded" if state == "SUCCESS" else "failed").inc()
    logs.request_id.set(None)
    logs.task_context.set(None)


def _count_cpu(body_started: float | None) -> None:
    """Add the finished task's CPU to ``WORKER_CPU``: its named phases, the rest of its body, and Celery's share."""
    now = time.process_time()
    phases = cputime.drain()
    helper = {name: seconds for name, seconds in phases.items() if name.endswith("(helper process)")}
    for name, seconds in phases.items():
        WORKER_CPU.labels(name).inc(seconds)
    if body_started is not None:
        body = now - body_started
        named = sum(seconds for name, seconds in phases.items() if name not in helper)
        WORKER_CPU.labels(TASK_REST).inc(max(0.0, body - named))
        if _cpu_mark[0] is not None:  # before a process's first task: its start and the model's warm-up
            WORKER_CPU.labels(BETWEEN_TASKS).inc(max(0.0, body_started - _cpu_mark[0]))
    _cpu_mark[0] = now


@task_retry.connect
def _task_retried(sender: Task[Any, Any] | None = None, **_: Any) -> None:
    TASKS.labels(sender.name if sender else "unknown", "retried").inc()


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    settings = get_settings().worker
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not settings.metrics_port:
        return
    if not folder:
        log.warning("PROMETHEUS_MULTIPROC_DIR is unset (start workers with `ragkeep worker`): no worker metrics")
        return
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        log.warning("worker metrics not served: port %d: %s", settings.metrics_port, exc)
        return
    log.info("worker metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]
