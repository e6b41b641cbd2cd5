"""The Celery side of ``release.dispatch.Enqueue``: each lifecycle step goes out as its task, on its queue."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.settings import Settings
from release.dispatch import Step
from tests.conftest import REDIS_URL
from workers.client import STEP_TASKS, TaskClient
from workers.names import ROUTES, Queue, queue_name


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TaskClient]:
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL, queue_prefix=f"t{uuid.uuid4().hex[:8]}-")
    tasks = TaskClient(settings)
    yield tasks
    tasks.close()
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(*[queue_name(q, settings.queue_prefix) for q in Queue])
    connection.close()


def test_every_step_is_sent_as_its_task_on_its_queue(client: TaskClient) -> None:
    assert set(STEP_TASKS) == set(Step)
    for step in Step:
        assert client.enqueue(step, f"{step.value}-id")
    connection = redis.Redis.from_url(REDIS_URL)
    for step, task in STEP_TASKS.items():
        queued = [
            json.loads(m)
            for m in connection.lrange(queue_name(ROUTES[task], client.settings.queue_prefix), 0, -1)
            if json.loads(m)["headers"]["task"] == task.value
        ]
        assert [json.loads(base64.b64decode(m["body"]))[0] for m in queued] == [[f"{step.value}-id"]], step
    connection.close()


def test_a_countdown_travels_with_the_message(client: TaskClient) -> None:
    assert client.enqueue(Step.build, "later", countdown=30.0)
    connection = redis.Redis.from_url(REDIS_URL)
    [raw] = connection.lrange(queue_name(Queue.build, client.settings.queue_prefix), 0, -1)
    connection.close()
    assert json.loads(raw)["headers"]["eta"] is not None
