"""Aggregates with bootstrap intervals, and paired comparisons of two runs on the same questions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eval.abstention import LOWER_IS_BETTER

CONFIDENCE = 0.95


def _clean(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def aggregate(values: Sequence[float | None], samples: int, seed: int = 0) -> dict[str, Any]:
    """Mean and 95% percentile-bootstrap interval of the measured values; unmeasured ones are counted.

    ``None`` (and NaN) mean "not measured" for that question: they are reported as a count,
    never averaged in as a number.
    """
    measured = _clean(values)
    result: dict[str, Any] = {"measured": len(measured), "not_measured": len(values) - len(measured)}
    if not measured:
        return {**result, "mean": None, "ci_low": None, "ci_high": None}
    data = np.asarray(measured)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return {
        **result,
        "mean": round(float(data.mean()), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
    }


@dataclass(frozen=True)
class MetricDelta:
    metric: str
    pairs: int
    base_mean: float | None
    candidate_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None


def paired_delta(
    metric: str, base: Mapping[int, float | None], candidate: Mapping[int, float | None], samples: int, seed: int = 0
) -> MetricDelta:
    """Mean of (candidate - base) over the questions both runs measured, with a paired bootstrap interval."""
    keys = sorted(k for k in base.keys() & candidate.keys() if _clean([base[k]]) and _clean([candidate[k]]))
    if not keys:
        return MetricDelta(metric, 0, None, None, None, None, None)
    a = np.asarray([float(base[k]) for k in keys])  # type: ignore[arg-type]
    b = np.asarray([float(candidate[k]) for k in keys])  # type: ignore[arg-type]
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return MetricDelta(
        metric,
        len(keys),
        round(float(a.mean()), 4),
        round(float(b.mean()), 4),
        round(float(diff.mean()), 4),
        round(float(low), 4),
        round(float(high), 4),
    )


def worsening(metric: str, delta: float) -> float:
    """How much worse a change of ``delta`` is (positive: worse): a drop, or a rise for lower-is-better metrics."""
    return delta if metric in LOWER_IS_BETTER else -delta


def gate_decision(deltas: Sequence[MetricDelta], thresholds: Mapping[str, float]) -> tuple[bool, list[str]]:
    """Pass unless a gated metric worsens by more than its threshold (drops; rises for a rate of failures)."""
    reasons, failed = [], False
    for delta in deltas:
        limit = thresholds.get(delta.metric)
        if limit is None:
            continue
        if delta.delta is None:
            reasons.append(f"{delta.metric}: not measured on both versions (not gated)")
        elif worsening(delta.metric, delta.delta) > limit:
            failed = True
            moved = "rose" if delta.metric in LOWER_IS_BETTER else "dropped"
            reasons.append(
                f"{delta.metric} {moved} {abs(delta.delta):.3f} (from {delta.base_mean:.3f} to "
                f"{delta.candidate_mean:.3f}, 95% CI {delta.ci_low:+.3f}..{delta.ci_high:+.3f}), "
                f"more than the allowed {limit:.3f}"
            )
    return not failed, reasons
