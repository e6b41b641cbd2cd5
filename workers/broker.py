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
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import sqlalchemy
from sqlalchemy import Engine, event

from core.db import sqlite_pragmas

# Seconds between polls while messages flow or the prefetch limit holds; the back-off's ceiling.
BUSY_POLL_S = 0.01
IDLE_POLL_MAX_S = 1.0


class Channel(sqlalchemy.Channel):
    def _engine_from_config(self) -> Engine:
        engine: Engine = super()._engine_from_config()
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", sqlite_pragmas)
        return engine


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
