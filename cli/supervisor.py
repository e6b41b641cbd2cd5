"""``ragkeep up``'s supervisor: start the parts, restart one that dies, stop them all in order.

A dead worker or beat must not take the API down: its jobs come back by themselves (acks_late,
heartbeats and the reconciler), so the part is restarted after a backoff while the rest keeps
serving. Only a part that keeps dying, or one that cannot start at all, stops ragkeep.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A part may be restarted RESTART_LIMIT times within RESTART_WINDOW_S; dying once more stops ragkeep.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 300.0
# Waits before a restart: 1, 2, 4, 8, 16 s (doubling per death within the window, at most 30 s).
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
# Dying this soon after the first start is a configuration problem (a port in use): no retrying.
STARTUP_GRACE_S = 3.0


class ChildFailed(Exception):
    """A part of ragkeep could not be started."""


@dataclass
class Part:
    """One supervised child. ``start`` builds its command afresh each time (a restarted worker
    gets an empty metrics folder); ``ready``, if given, returns once the part is up or raises
    ChildFailed."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    ready: Callable[[subprocess.Popen[bytes]], None] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


@dataclass
class Supervisor:
    parts: Sequence[Part]
    echo: Callable[[str], None]
    restart_limit: int = RESTART_LIMIT
    window_s: float = RESTART_WINDOW_S
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    startup_grace_s: float = STARTUP_GRACE_S
    clock: Callable[[], float] = time.monotonic

    def start_all(self) -> None:
        """Start every part in order (each returns once it is up); ChildFailed if one cannot start."""
        for part in self.parts:
            self._start(part)

    def check(self) -> str | None:
        """One supervision round: note deaths, restart parts whose backoff is over.

        Returns why ragkeep must stop (a part keeps dying), or None.
        """
        for part in self.parts:
            now = self.clock()
            if part.process is not None and part.process.poll() is not None:
                reason = self._died(part, f"exited with code {part.process.returncode}", now)
                if reason:
                    return reason
            elif part.process is None and part.restart_at is not None and now >= part.restart_at:
                part.restart_at = None
                try:
                    self._start(part)
                except ChildFailed as exc:
                    reason = self._died(part, f"did not start again ({exc})", self.clock())
                    if reason:
                        return reason
                else:
                    assert part.process is not None
                    self.echo(f"{part.name} restarted (pid {part.process.pid})")
        return None

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM every running part, last started first; kill those still running after ``grace_s``."""
        running = [part for part in reversed(self.parts) if part.process is not None]
        for part in running:
            assert part.process is not None
            if part.process.poll() is None:
                part.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + grace_s
        for part in running:
            assert part.process is not None
            try:
                part.process.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                self.echo(f"{part.name} did not stop in {grace_s:.0f} s; killing it")
                part.process.kill()
                part.process.wait()

    def _start(self, part: Part) -> None:
        part.starts += 1
        part.started_at = self.clock()
        part.process = part.start()
        if part.ready is not None:
            part.ready(part.process)

    def _died(self, part: Part, how: str, now: float) -> str | None:
        process, part.process = part.process, None
        if process is not None and process.poll() is None:  # started but not up (ChildFailed): no orphan
            process.kill()
            process.wait()
        if part.starts == 1 and now - part.started_at < self.startup_grace_s:
            return f"{part.name} {how} right after starting; stopping ragkeep"
        part.deaths.append(now)
        while part.deaths and part.deaths[0] < now - self.window_s:
            part.deaths.popleft()
        if len(part.deaths) > self.restart_limit:
            return f"{part.name} {how}; it died {len(part.deaths)} times within {self.window_s:.0f} s; stopping ragkeep"
        delay = min(self.backoff_max_s, self.backoff_first_s * 2 ** (len(part.deaths) - 1))
        part.restart_at = now + delay
        self.echo(
            f"{part.name} {how}; restarting it in {delay:g} s "
            f"(restart {len(part.deaths)} of at most {self.restart_limit} within {self.window_s:.0f} s)"
        )
        return None
