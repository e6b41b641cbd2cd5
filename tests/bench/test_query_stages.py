"""The latency bench keeps /query's own per-stage times (grounding's cost) and the report shows them."""

from __future__ import annotations

from bench import latency, report


def test_stage_times_are_summarised_and_reported_with_grounds_share() -> None:
    stages = [{"retrieve": 10.0, "generate": 1.0, "ground": 2.0 * i, "total": 13.0 + 2.0 * i} for i in range(1, 5)]
    summary = latency.summarise([20.0, 21.0, 22.0, 23.0], 0, 1.0, stages)
    assert summary["server_stages_ms"]["ground"] == {"p50": 6.0, "p95": 8.0, "mean": 5.0}
    assert "server_stages_ms" not in latency.summarise([20.0], 0, 1.0)
    run = {"target": "ragkeep /query", "model": "m", "mode": "extractive answer", "concurrency": 1, **summary}
    table = report.stages_table({"latency": {"runs": [run]}})
    assert table[2].endswith("| 22.0 | 10.0 / 10.0 | 1.0 / 1.0 | 6.0 / 5.0 | 19.0 / 18.0 | 27.8% |"), table
    assert report.stages_table({"latency": {"runs": [{"target": "floor", "p50_ms": 1.0}]}}) == []
