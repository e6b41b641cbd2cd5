"""CPU seconds by phase of work (parse, catalog, embed, ...), for the worker's metrics and the benchmark.

Issue 21: on a machine whose cores are all busy, ingestion throughput is the CPU available
divided by the CPU a chunk costs in every process, so the worker tells what its CPU went to.
``with phase("embed"): ...`` adds the process CPU time spent inside the block to that phase,
minus what nested phases took (each second is counted once, in the innermost phase);
``add`` records CPU spent by another process on this one's behalf (the parse helper).
``drain`` returns the totals since the last drain and starts again.

Process CPU time (all threads): a Celery prefork process runs one task at a time, so what its
other threads do meanwhile (the heartbeat) is small and belongs to the task anyway. A phase
costs two ``clock_gettime`` calls, well under a microsecond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_totals: dict[str, float] = {}
_lock = threading.Lock()
_local = threading.local()


def _stack() -> list[list[float]]:
    stack: list[list[float]] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def add(name: str, seconds: float) -> None:
    """Count ``seconds`` of CPU towards ``name``."""
    if seconds <= 0:
        return
    with _lock:
        _totals[name] = _totals.get(name, 0.0) + seconds


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the CPU time spent in the block towards ``name``, less that of phases nested in it."""
    stack = _stack()
    frame = [time.process_time(), 0.0]  # start, CPU of nested phases
    stack.append(frame)
    try:
        yield
    finally:
        stack.pop()
        spent = time.process_time() - frame[0]
        add(name, spent - frame[1])
        if stack:
            stack[-1][1] += spent


def drain() -> dict[str, float]:
    """The CPU seconds by phase since the last drain (and start counting afresh)."""
    global _totals
    with _lock:
        totals, _totals = _totals, {}
    return totals
