"""Structured logging: one JSON object per line, carrying the request id across processes.

The API takes a request's id from ``X-Request-ID`` (or makes one), the task client puts
it in the headers of every task it enqueues, and the worker restores it before running
the task, so one ``grep`` of the id finds the HTTP request and every task it caused,
including tasks those tasks enqueued.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

request_id: ContextVar[str | None] = ContextVar("ragkeep_request_id", default=None)
task_context: ContextVar[dict[str, str] | None] = ContextVar("ragkeep_task", default=None)

_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a
# field (except uvicorn's duplicate of the message with terminal colours).
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def new_request_id(offered: str | None = None) -> str:
    """The caller's id if it is a sane token, else a fresh one (never trust a header into a log verbatim)."""
    if offered and _GOOD_ID.match(offered):
        return offered
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if rid := request_id.get():
            entry["request_id"] = rid
        if task := task_context.get():
            entry.update(task)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = request_id.get()
        return f"{text} [request_id={rid}]" if rid else text


def configure(fmt: Literal["json", "text"], level: str) -> None:
    """Route every logger (ours, uvicorn's, Celery's) through one stderr handler in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.worker"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The API logs its own access line (with the request id); uvicorn's would be a second, poorer one.
    logging.getLogger("uvicorn.access").disabled = True
