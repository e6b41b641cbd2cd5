"""The embedded broker's transport (``workers.broker``) on a real SQLite file, through Kombu."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Producer, Queue
from kombu.message import Message

from core.settings import Settings
from workers import broker
from workers.app import create_celery


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    with Connection(f"sqlite:///{tmp_path / 'broker.sqlite'}", transport="workers.broker:Transport") as conn:
        yield conn


def _drain_nothing(connection: Connection) -> None:
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=0.02)


def test_the_embedded_default_runs_on_the_adaptive_transport_and_redis_on_its_own(tmp_path: Path) -> None:
    embedded = create_celery(Settings(data_dir=tmp_path))
    with embedded.connection_for_write() as conn:
        assert isinstance(conn.transport, broker.Transport)
        assert conn.hostname == f"sqlite:///{tmp_path.resolve() / 'broker.sqlite'}"
    redis = create_celery(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0"))
    with redis.connection_for_write() as conn:
        assert not isinstance(conn.transport, broker.Transport)


def test_a_worker_holding_its_prefetch_polls_again_soon_and_an_idle_one_backs_off(connection: Connection) -> None:
    """Kombu's SQLAlchemy transport slept a fixed second after every empty poll, also while the
    prefetch limit held: a worker with acks late took about one 20 ms task per second per process."""
    queue = Queue("ingest", routing_key="ingest")
    received: list[Message] = []

    def take(_: Any, message: Message) -> None:
        received.append(message)

    channel = connection.channel()
    consumer = Consumer(channel, [queue], callbacks=[take], accept=["json"])
    consumer.qos(prefetch_count=1)
    consumer.consume()
    transport = connection.transport
    assert isinstance(transport, broker.Transport)

    for _ in range(12):  # nothing queued: each empty poll waits longer, up to the ceiling
        _drain_nothing(connection)
    assert transport._idle_poll_s == broker.IDLE_POLL_MAX_S

    producer = Producer(connection.channel(), routing_key="ingest")
    for number in range(2):
        producer.publish({"n": number}, declare=[queue], serializer="json")
    connection.drain_events(timeout=5)
    assert [m.payload["n"] for m in received] == [0]
    assert transport._idle_poll_s == broker.BUSY_POLL_S  # a delivery: poll soon again

    _drain_nothing(connection)  # the prefetch limit holds (acks late): checked in memory, no back-off
    assert transport._idle_poll_s == broker.BUSY_POLL_S and len(received) == 1

    received[0].ack()
    connection.drain_events(timeout=5)
    assert [m.payload["n"] for m in received] == [0, 1]
    received[1].ack()
    consumer.cancel()


def test_the_broker_file_is_in_write_ahead_mode_so_sends_and_polls_do_not_wait_on_each_other(
    tmp_path: Path, connection: Connection
) -> None:
    """Each send was a rollback-journal commit with its own fsyncs: 31-39 ms on a loaded machine."""
    queue = Queue("ingest", routing_key="ingest")
    Producer(connection.channel(), routing_key="ingest").publish({"n": 1}, declare=[queue], serializer="json")
    with sqlite3.connect(tmp_path / "broker.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_delivered_messages_are_deleted_so_the_file_and_each_poll_stay_small(
    tmp_path: Path, connection: Connection
) -> None:
    """Kombu kept every delivered message as an invisible row, and each poll walked past all of them
    (an empty poll: 0.6 ms on a new file, 5.0 ms after 20,000 deliveries)."""
    queue = Queue("ingest", routing_key="ingest")
    producer = Producer(connection.channel(), routing_key="ingest")
    received: list[int] = []

    def take(body: Any, message: Message) -> None:
        received.append(body["n"])
        message.ack()

    Consumer(connection.channel(), [queue], callbacks=[take], accept=["json"]).consume()
    sent = 3 * broker.PURGE_EVERY + 5
    for number in range(sent):
        producer.publish({"n": number}, declare=[queue], serializer="json")
    while len(received) < sent:
        connection.drain_events(timeout=5)
    assert received == list(range(sent))  # nothing lost or repeated by the deletions

    def rows() -> tuple[int, int]:
        with sqlite3.connect(tmp_path / "broker.sqlite") as db:
            count, hidden = db.execute("SELECT count(*), coalesce(sum(visible = 0), 0) FROM kombu_message").fetchone()
        return int(count), int(hidden)

    assert rows() == (5, 5)  # the deliveries since the last deletion
    producer.publish({"n": sent}, declare=[queue], serializer="json")
    with Connection(f"sqlite:///{tmp_path / 'broker.sqlite'}", transport="workers.broker:Transport") as other:
        other.channel()  # a channel opening (a worker starting) deletes what was delivered
        assert rows() == (1, 0)  # the queued message stays


def test_a_queue_another_process_created_meanwhile_is_read_not_a_crash(tmp_path: Path) -> None:
    """Kombu's lock around creating a queue's row is per process: a worker that lost the race to another
    process died on `UNIQUE constraint failed: kombu_queue.name` (CI, a worker and the API starting together)."""
    url = f"sqlite:///{tmp_path / 'broker.sqlite'}"
    with (
        Connection(url, transport="workers.broker:Transport") as first,
        Connection(url, transport="workers.broker:Transport") as second,
    ):
        late, early = first.channel(), second.channel()
        real_query = late.session.query
        looks = []

        def query_missing_the_other_insert(*args: Any) -> Any:
            looks.append(1)
            if len(looks) == 2:  # the other process inserts after this one's last look, before its insert
                early._get_or_create("ingest")
            if len(looks) <= 2:
                return real_query(*args).filter(late.queue_cls.name != "ingest")
            return real_query(*args)

        late.session.query = query_missing_the_other_insert  # type: ignore[method-assign]
        assert late._get_or_create("ingest").name == "ingest"
        assert len(looks) == 3  # looked twice, lost the insert, read the winner's row
    with sqlite3.connect(tmp_path / "broker.sqlite") as db:
        assert db.execute("SELECT count(*) FROM kombu_queue WHERE name = 'ingest'").fetchone()[0] == 1
