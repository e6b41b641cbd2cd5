"""``ragkeep up``'s supervisor over real (tiny) child processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from cli.supervisor import Part, Supervisor


def _python(code: str) -> Callable[[], subprocess.Popen[bytes]]:
    return lambda: subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _run(supervisor: Supervisor, until: Callable[[], bool], timeout: float = 30) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (reason := supervisor.check()) is not None:
            return reason
        if until():
            return None
        time.sleep(0.05)
    raise TimeoutError("the supervisor did not get there")


def _supervisor(parts: list[Part], messages: list[str], restart_limit: int = 5, window_s: float = 300.0) -> Supervisor:
    """Short waits; no start-up grace (these children die at once on purpose)."""
    return Supervisor(parts, messages.append, restart_limit, window_s, backoff_first_s=0.05, startup_grace_s=0.0)


def test_a_dead_part_is_restarted_with_backoff_while_the_others_keep_running() -> None:
    messages: list[str] = []
    steady = Part("api", _python("import time; time.sleep(60)"))
    flaky = Part("worker", _python("import sys, time; time.sleep(0.3); sys.exit(3)"))
    supervisor = _supervisor([steady, flaky], messages)
    supervisor.start_all()
    steady_pid = steady.process.pid if steady.process else None
    try:
        assert _run(supervisor, lambda: flaky.starts >= 3) is None
        assert steady.process is not None and steady.process.poll() is None and steady.process.pid == steady_pid
        assert messages[0] == "worker exited with code 3; restarting it in 0.05 s (restart 1 of at most 5 within 300 s)"
        assert messages[1].startswith("worker restarted (pid ")
        assert "restarting it in 0.1 s (restart 2 of at most 5" in messages[2], "the wait doubles"
    finally:
        supervisor.stop()
    assert steady.process.poll() is not None


def test_a_part_that_keeps_dying_stops_the_supervisor() -> None:
    messages: list[str] = []
    crashing = Part("beat", _python("import sys; sys.exit(1)"))
    supervisor = _supervisor([crashing], messages, restart_limit=2)
    supervisor.start_all()
    try:
        reason = _run(supervisor, lambda: False)
    finally:
        supervisor.stop()
    assert reason == "beat exited with code 1; it died 3 times within 300 s; stopping ragkeep"
    assert crashing.starts == 3


def test_deaths_outside_the_window_are_forgotten() -> None:
    now = [0.0]
    messages: list[str] = []
    part = Part("worker", _python("import sys; sys.exit(2)"))
    supervisor = _supervisor([part], messages, restart_limit=1, window_s=10.0)
    supervisor.clock = lambda: now[0]
    supervisor.start_all()
    for _ in range(4):  # one death every 20 s: never two within the window
        assert part.process is not None
        part.process.wait()
        now[0] += 20.0
        assert supervisor.check() is None  # noted; restart due in 1 backoff
        now[0] += 1.0
        assert supervisor.check() is None  # restarted
    supervisor.stop()
    assert part.starts == 5 and all("restart 1 of at most 1" in m for m in messages if "exited" in m)


def test_a_part_that_dies_right_after_its_first_start_stops_at_once() -> None:
    """A port in use or a bad setting: restarting cannot help, so say so at once."""
    part = Part("api", _python("import sys; sys.exit(1)"))
    supervisor = Supervisor([part], lambda _: None, startup_grace_s=30.0)
    supervisor.start_all()
    assert _run(supervisor, lambda: False) == "api exited with code 1 right after starting; stopping ragkeep"
    assert part.starts == 1
