"""core.cputime: CPU seconds by phase, nested phases counted once."""

from __future__ import annotations

import time

from core import cputime


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_phases_count_each_second_once() -> None:
    cputime.drain()
    with cputime.phase("outer"):
        _burn(0.05)
        with cputime.phase("inner"):
            _burn(0.1)
    totals = cputime.drain()
    assert 0.09 <= totals["inner"] <= 0.3
    assert 0.04 <= totals["outer"] <= 0.1  # without the inner phase's 0.1 s
    assert cputime.drain() == {}


def test_added_seconds_and_an_exception_still_count() -> None:
    cputime.drain()
    cputime.add("helper", 0.25)
    cputime.add("helper", -1.0)  # a helper that could not be read: ignored
    try:
        with cputime.phase("failing"):
            _burn(0.02)
            raise ValueError("boom")
    except ValueError:
        pass
    totals = cputime.drain()
    assert totals["helper"] == 0.25
    assert totals["failing"] >= 0.015
