from __future__ import annotations

import json
import logging
import sys

from core import logs


def _record(msg: str, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("ragkeep.test", logging.WARNING, __file__, 1, msg, ("x",), exc_info)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_request_id_task_and_extra_fields() -> None:
    token = logs.request_id.set("req-1")
    task = logs.task_context.set({"task": "ingest.parse_document", "task_id": "t-1"})
    try:
        line = logs.JsonFormatter().format(_record("parsed %s", collection="hr", chunks=3, obj=object()))
    finally:
        logs.request_id.reset(token)
        logs.task_context.reset(task)
    entry = json.loads(line)
    assert entry["msg"] == "parsed x" and entry["level"] == "warning" and entry["logger"] == "ragkeep.test"
    assert entry["request_id"] == "req-1" and entry["task"] == "ingest.parse_document" and entry["task_id"] == "t-1"
    assert entry["collection"] == "hr" and entry["chunks"] == 3 and entry["obj"].startswith("<object")
    assert "\n" not in line


def test_exceptions_stay_on_one_line_and_no_id_means_no_field() -> None:
    line = logs.JsonFormatter().format(_record("failed %s", exc=True))
    entry = json.loads(line)
    assert "ValueError: boom" in entry["exc"] and "request_id" not in entry and "\n" not in line


def test_only_sane_request_ids_are_kept() -> None:
    assert logs.new_request_id("abc-123.X:y_z") == "abc-123.X:y_z"
    for hostile in ("has space", "x" * 65, "new\nline", '"quote"', None, ""):
        generated = logs.new_request_id(hostile)
        assert len(generated) == 32 and generated != hostile
