"""The benchmark's memory sampler keeps its own CPU small next to the stack it measures (issue 21)."""

from __future__ import annotations

import os
import time

import psutil

from bench.stack import MemorySampler


class _CostlySampler(MemorySampler):
    """A sampler whose samples cost ``cost`` seconds of CPU each, as reading many processes' smaps does."""

    def __init__(self, cost: float, **kwargs: float) -> None:
        super().__init__(psutil.Process(os.getpid()), **kwargs)
        self.cost = cost

    def sample(self) -> float:
        started = time.thread_time()
        while time.thread_time() - started < self.cost:
            pass
        return 100.0 + self.samples


def test_a_costly_sample_stretches_the_wait_so_the_sampler_stays_under_its_share_of_a_core() -> None:
    # 40 ms a sample at 1% of a core: the next sample comes 4 s later, not after the 0.2 s interval.
    with _CostlySampler(0.04, interval=0.2, max_share=0.01) as sampler:
        time.sleep(1.0)
    assert sampler.samples == 1
    assert 0.04 <= sampler.cpu_seconds < 0.2
    assert sampler.peak_mb == 100.0


def test_a_cheap_sample_keeps_the_interval() -> None:
    with _CostlySampler(0.0, interval=0.05, max_share=0.5) as sampler:
        time.sleep(0.6)
    assert sampler.samples >= 4
    assert sampler.peak_mb == 100.0 + sampler.samples - 1
