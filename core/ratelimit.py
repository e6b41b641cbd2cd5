"""Requests per minute per API key: fixed one-minute windows, in Redis when configured.

With Redis every API process shares the counters; without it each process counts on
its own (the embedded default runs one API process).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from core.errors import TooManyRequests


class _Counter(Protocol):
    def hit(self, key: str, window: int) -> int: ...


class MemoryCounter:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window: int) -> int:
        with self._lock:
            if len(self._counts) > 10_000:  # forget finished windows
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            self._counts[(key, window)] = self._counts.get((key, window), 0) + 1
            return self._counts[(key, window)]


class RedisCounter:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def hit(self, key: str, window: int) -> int:
        name = f"ragkeep:rate:{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = pipe.execute()
        return int(count)


class RateLimiter:
    def __init__(self, per_minute: int, redis_url: str | None) -> None:
        self.per_minute = per_minute
        self._counter: _Counter = RedisCounter(redis_url) if redis_url and per_minute else MemoryCounter()

    @property
    def does_io(self) -> bool:
        """Whether a check is a network round trip (Redis): async callers run it in a thread."""
        return bool(self.per_minute) and isinstance(self._counter, RedisCounter)

    def check(self, key: str) -> None:
        """Count one request of ``key``; raise 429 with the seconds until the window resets."""
        if not self.per_minute:
            return
        now = time.time()
        window = int(now // 60)
        if self._counter.hit(key, window) > self.per_minute:
            retry_after = max(1, int(60 - now % 60) + 1)
            raise TooManyRequests(
                f"more than {self.per_minute} requests a minute for this key; retry later", retry_after
            )
