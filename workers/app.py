"""The Celery application: broker from settings, reliability options, beat schedule.

``celery -A workers.app worker`` and ``celery -A workers.app beat`` use the module-level
``app``; creating it opens no connection. The API builds its own producer-only app with
``create_celery`` and never imports the task modules.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab

from core.settings import Settings, get_settings
from workers import observe  # noqa: F401  (signal handlers: logging, metrics, request ids)
from workers.names import ROUTES, Queue, TaskName, queue_name

# Longer than the slowest task, so Redis does not redeliver a task that is still running.
VISIBILITY_TIMEOUT_S = 4 * 3600
SQLA_PREFIX = "sqla+"


def nightly_schedule(expression: str) -> crontab:
    """A five-field crontab expression (minute hour day-of-month month day-of-week), UTC."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"RAGKEEP_EVAL__SCHEDULE must have 5 crontab fields, got {expression!r}")
    minute, hour, day_of_month, month, day_of_week = fields
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month, day_of_week=day_of_week)


def broker_options(settings: Settings) -> tuple[str, str | None]:
    """Celery's broker URL and transport: Redis as it is; the embedded SQLite broker through ``workers.broker``."""
    url = settings.broker_url
    if settings.redis_url or not url.startswith(SQLA_PREFIX):
        return url, None
    # Kombu takes the transport from the URL's "sqla+" prefix; without it, from ``broker_transport``.
    return url.removeprefix(SQLA_PREFIX), "workers.broker:Transport"


def create_celery(settings: Settings, include_tasks: bool = False) -> Celery:
    prefix = settings.queue_prefix
    limits = settings.worker
    broker, transport = broker_options(settings)
    app = Celery("ragkeep", broker=broker, include=["workers.tasks"] if include_tasks else [])
    annotations: dict[str, dict[str, Any]] = {
        TaskName.parse_document: {
            "soft_time_limit": limits.parse_soft_time_limit_s,
            "time_limit": limits.parse_soft_time_limit_s + 60,
        },
        TaskName.parse_documents: {  # a group of small documents (seconds), under one document's limit
            "soft_time_limit": limits.parse_soft_time_limit_s,
            "time_limit": limits.parse_soft_time_limit_s + 60,
        },
        TaskName.ocr_document: {
            "soft_time_limit": settings.ocr.soft_time_limit_s,
            "time_limit": settings.ocr.soft_time_limit_s + 60,
        },
        TaskName.build_version: {
            "soft_time_limit": limits.build_soft_time_limit_s,
            "time_limit": limits.build_soft_time_limit_s + 120,
        },
    }
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue_name(Queue.maintenance, prefix),
        task_routes={name.value: {"queue": queue_name(queue, prefix)} for name, queue in ROUTES.items()},
        task_annotations=annotations,
        broker_connection_retry_on_startup=True,
        broker_transport=transport,
        # Kombu's SQLAlchemy transport passes transport options to create_engine: Redis only.
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S} if settings.redis_url else {},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "reconcile-stuck-jobs": {
                "task": TaskName.reconcile.value,
                "schedule": float(limits.reconcile_interval_s),
                "options": {"queue": queue_name(Queue.maintenance, prefix), "expires": limits.reconcile_interval_s},
            },
            "nightly-evaluation": {
                "task": TaskName.nightly.value,
                "schedule": nightly_schedule(settings.eval.schedule),
                "options": {"queue": queue_name(Queue.maintenance, prefix), "expires": 6 * 3600},
            },
            "prune-query-log": {
                "task": TaskName.prune_query_log.value,
                "schedule": crontab(minute="30", hour="3"),
                "options": {"queue": queue_name(Queue.maintenance, prefix), "expires": 3600},
            },
        },
        timezone="UTC",
    )
    return app


def all_queues(settings: Settings, without: tuple[Queue, ...] = ()) -> list[str]:
    return [queue_name(q, settings.queue_prefix) for q in Queue if q not in without]


app = create_celery(get_settings(), include_tasks=True)
