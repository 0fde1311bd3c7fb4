"""Charts as inline SVG, drawn on the server: no chart library, no script, readable without colour.

Each chart is a bar per day with a text label and a <title> per bar (a tooltip, read by screen readers);
the page puts the same figures in a table beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 180
_PAD_LEFT, _PAD_BOTTOM, _PAD_TOP = 44, 22, 10


@dataclass(frozen=True, slots=True)
class Point:
    day: dt.date
    value: float | None  # None: nothing that day
    label: str


def bars(points: Sequence[Point], ceiling: float | None, title: str, unit_label: str) -> Markup:
    """A bar chart of `points` scaled to `ceiling` (None: the largest value)."""
    top = ceiling if ceiling is not None else max((p.value or 0 for p in points), default=0) or 1
    inner_w = WIDTH - _PAD_LEFT - 4
    inner_h = HEIGHT - _PAD_BOTTOM - _PAD_TOP
    step = inner_w / max(1, len(points))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line x1="{_PAD_LEFT}" y1="{_PAD_TOP + inner_h}" x2="{WIDTH - 4}" y2="{_PAD_TOP + inner_h}" class="axis"/>',
        f'<text x="{_PAD_LEFT - 6}" y="{_PAD_TOP + 8}" text-anchor="end" class="tick">{escape(_short(top))}</text>',
        f'<text x="{_PAD_LEFT - 6}" y="{_PAD_TOP + inner_h}" text-anchor="end" class="tick">0</text>',
        f'<text x="4" y="{HEIGHT / 2}" class="tick" transform="rotate(-90 10 {HEIGHT / 2})">'
        f"{escape(unit_label)}</text>",
    ]
    for index, point in enumerate(points):
        x = _PAD_LEFT + index * step + step * 0.15
        if point.value is not None:
            height = max(1.0, inner_h * min(1.0, point.value / top))
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{_PAD_TOP + inner_h - height:.1f}" width="{step * 0.7:.1f}" '
                f'height="{height:.1f}"><title>{escape(point.day.isoformat())}: {escape(point.label)}</title></rect>'
            )
        if len(points) <= 10 or index % max(1, len(points) // 6) == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{HEIGHT - 6}" text-anchor="middle" class="tick">'
                f"{point.day.strftime('%m-%d')}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text above is escaped


def _short(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
