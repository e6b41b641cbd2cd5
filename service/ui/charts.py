"""Charts as inline SVG, drawn on the server: no chart library, no script, nothing to download.

Every number is formatted here and every label goes through ``markupsafe.escape``; the SVG
uses presentation attributes and CSS classes only (the console's CSP forbids inline styles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Point:
    label: str  # x-axis label, e.g. "v3 · 11-30 02:00"
    value: float | None
    low: float | None = None  # 95% interval, when there is one
    high: float | None = None


def _scale(value: float, low: float, high: float, size: float) -> float:
    return size / 2 if high == low else (value - low) / (high - low) * size


def sparkline(values: Sequence[float | None], width: int = 96, height: int = 24, title: str = "") -> Markup:
    """A small line of the last values (None: a gap), on a 0-1 scale; empty markup with fewer than two."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return Markup("")
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - _scale(v, 0.0, 1.0, height - 4):.1f}" for i, v in known)
    last_x, last_v = known[-1][0] * step, known[-1][1]
    last_y = height - 2 - _scale(last_v, 0.0, 1.0, height - 4)
    return Markup(
        f'<svg class="spark" role="img" width="{width}" height="{height}" viewBox="-2 0 {width + 4} {height}">'
        f"<title>{escape(title)}</title>"
        f'<polyline points="{points}" fill="none" stroke="currentColor" stroke-width="1.5"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5" fill="currentColor"/></svg>'
    )


def trend(title: str, points: Sequence[Point], width: int = 560, height: int = 200) -> Markup:
    """A line per metric over evaluation runs, with the 95% interval as a band, y from 0 to 1."""
    left, right, top, bottom = 72, 48, 12, 44
    inner_w, inner_h = width - left - right, height - top - bottom
    step = inner_w / max(1, len(points) - 1)

    def y(value: float) -> float:
        return top + inner_h - _scale(value, 0.0, 1.0, inner_h)

    parts = [
        f'<svg class="trend" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(
            f'<line class="grid" x1="{left - 16}" x2="{width - right + 16}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text class="axis" x="{left - 22}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.1f}</text>'
        )
    band_top = [(i, p) for i, p in enumerate(points) if p.low is not None and p.high is not None]
    if len(band_top) >= 2:
        upper = [f"{left + i * step:.1f},{y(p.high or 0):.1f}" for i, p in band_top]
        lower = [f"{left + i * step:.1f},{y(p.low or 0):.1f}" for i, p in reversed(band_top)]
        parts.append(f'<polygon class="band" points="{" ".join(upper + lower)}"/>')
    known = [(i, p.value) for i, p in enumerate(points) if p.value is not None]
    if len(known) >= 2:
        line = " ".join(f"{left + i * step:.1f},{y(v):.1f}" for i, v in known)
        parts.append(f'<polyline class="line" points="{line}" fill="none" stroke-width="2"/>')
    every = max(1, -(-len(points) // 6))  # at most about six x labels
    for i, p in enumerate(points):
        x = left + i * step
        if p.value is not None:
            interval = f" (95% CI {p.low:.3f} to {p.high:.3f})" if p.low is not None and p.high is not None else ""
            parts.append(
                f'<circle class="dot" cx="{x:.1f}" cy="{y(p.value):.1f}" r="3.5">'
                f"<title>{escape(p.label)}: {p.value:.3f}{escape(interval)}</title></circle>"
            )
        if i % every == 0 or i == len(points) - 1:
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                f"{escape(p.label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(title: str, labels: Sequence[str], values: Sequence[float], width: int = 560, height: int = 180) -> Markup:
    """A bar per day (queries), labelled under the bars."""
    left, bottom, top = 36, 40, 12
    inner_h = height - top - bottom
    peak = max(values, default=0) or 1
    slot = (width - left) / max(1, len(values))
    parts = [
        f'<svg class="bars" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
        f'<text class="axis" x="{left - 6}" y="{top + 4}" text-anchor="end">{peak:g}</text>'
        f'<text class="axis" x="{left - 6}" y="{top + inner_h + 4}" text-anchor="end">0</text>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = value / peak * inner_h
        x = left + i * slot + slot * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + inner_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {value:g}</title></rect>"
            f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
