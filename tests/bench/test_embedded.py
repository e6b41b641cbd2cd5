"""The embedded-default-against-Redis comparison's arithmetic and its line in the benchmark report."""

from __future__ import annotations

from bench.embedded import summarise
from bench.report import _embedded_lines


def _run(rate: float) -> dict[str, float]:
    return {"documents_per_s": rate}


def test_the_comparison_divides_median_rates_and_keeps_each_rounds_ratio() -> None:
    result = summarise(
        {"embedded": [_run(9.0), _run(12.0), _run(10.0)], "redis": [_run(10.0), _run(10.0), _run(20.0)]}, 500
    )
    assert result["documents_per_s"] == {"embedded": 10.0, "redis": 10.0}
    assert result["ratio"] == 1.0
    assert result["ratio_by_round"] == [0.9, 1.2, 0.5]


def test_the_report_states_the_ratio_against_the_target() -> None:
    comparison = summarise({"embedded": [_run(7.0)], "redis": [_run(10.0)]}, 40)
    [line, _] = _embedded_lines({"embedded": comparison})
    assert "**0.70x**" in line and "not met" in line
    assert _embedded_lines({}) == []
