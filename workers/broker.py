"""The embedded broker: Kombu's SQLAlchemy transport on SQLite, polled the way a queue of short tasks needs.

Kombu's virtual transports sleep ``polling_interval`` (1 s) after every poll that found nothing,
and a poll finds nothing also while the worker holds as many messages as its prefetch allows.
With acks late and a prefetch of one message per process, a worker whose tasks take 20 ms thus
took a new one about once a second per process: 2 documents a second, whatever the machine
(issue 21). This transport polls again soon after a poll that delivered a message or that was
refused by the prefetch limit (a pure in-memory check: no SQL), and backs off towards one
second while the queues stay empty, so an idle worker still costs what it did.

The broker's SQLite file gets the catalog's settings (``core.db.sqlite_pragmas``): write-ahead
logging, so that the API's sends and the worker's polls do not wait on each other, and a commit
that survives a killed process without an fsync of its own. A send took 31-39 ms without them
and 3-6 ms with them on the loaded 2-core machine of issue 21.

Kombu keeps every delivered message as a row marked invisible, and its poll (``visible != 0``
ordered by time) walks past all of them: an empty poll took 0.6 ms on a fresh file, 2.1 ms after
5,000 deliveries and 5.0 ms after 20,000, and the file only grew. A redelivery is a new row
(Kombu's restore publishes again), so a delivered row is never read again: each channel deletes
them when it opens and after every ``PURGE_EVERY`` deliveries.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import sqlalchemy
from sqlalchemy import Engine, delete, event
from sqlalchemy.exc import IntegrityError

from core.db import sqlite_pragmas

# Seconds between polls while messages flow or the prefetch limit holds; the back-off's ceiling.
BUSY_POLL_S = 0.01
IDLE_POLL_MAX_S = 1.0
# Deliveries between two deletions of delivered rows.
PURGE_EVERY = 64


class Channel(sqlalchemy.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delivered = 0
        self.purge_delivered()

    def _engine_from_config(self) -> Engine:
        engine: Engine = super()._engine_from_config()
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", sqlite_pragmas)
        return engine

    def _get_or_create(self, queue: str) -> Any:
        """Kombu's, safe across processes: its lock is per process, so two processes (a worker and the
        API starting together) could both insert a new queue's row, and the second died on the name's
        unique constraint. The loser now reads the winner's row."""
        try:
            return super()._get_or_create(queue)  # type: ignore[misc]  # Kombu's stubs omit it
        except IntegrityError:
            self.session.rollback()
            return super()._get_or_create(queue)  # type: ignore[misc]

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        payload = super()._get(queue)  # raises Empty when there is nothing (Kombu's takes no timeout)
        self._delivered += 1
        if self._delivered >= PURGE_EVERY:
            self.purge_delivered()
        return payload

    def purge_delivered(self) -> None:
        """Delete the rows of delivered messages (Kombu marks them invisible and keeps them)."""
        self.session.execute(delete(self.message_cls).where(self.message_cls.visible.is_(False)))
        self.session.commit()
        self._delivered = 0


class Transport(sqlalchemy.Transport):
    """``sqla+…`` with an adaptive polling interval and the catalog's SQLite settings (see the module's docstring)."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_poll_s = BUSY_POLL_S

    def _can_consume(self) -> bool:
        return any(channel.qos.can_consume() for channel in self.channels or () if channel._consumers)

    def drain_events(self, connection: Any, timeout: float | None = None, **_: Any) -> None:
        started = monotonic()
        assert self.cycle is not None  # set when the first channel opens, before any drain
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                if self._can_consume():  # the queues were polled and empty: back off
                    wait = self._idle_poll_s
                    self._idle_poll_s = min(IDLE_POLL_MAX_S, self._idle_poll_s * 2)
                else:  # every process busy: a slot frees when a task acks, polled for in memory
                    wait = BUSY_POLL_S
                if timeout is not None:
                    wait = min(wait, max(0.0, timeout - (monotonic() - started)))
                sleep(wait)
            else:
                self._idle_poll_s = BUSY_POLL_S
                return
