"""The dashboard's chart as inline SVG, drawn on the server: no chart library, nothing fetched at run time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 44, 16, 40


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]  # rates, 0..1
    colour: str


def daily_chart(days: Sequence[str], volumes: Sequence[int], lines: Sequence[Series], title: str) -> str:
    """Volume bars (left axis) and rate lines (right axis, 0-100%) per day; safe to embed as markup."""
    n = max(len(days), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n
    top = max([*volumes, 1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'class="chart" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="axis">{top}</text>',
        f'<text x="{LEFT + plot_w + 6}" y="{TOP + 10}" class="axis">100%</text>',
    ]
    for index, (day, volume) in enumerate(zip(days, volumes, strict=True)):
        height = plot_h * volume / top
        x = LEFT + index * step + step * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{step * 0.7:.1f}" '
            f'height="{height:.1f}" fill="#9ec5e8"><title>{escape(day)}: {volume}</title></rect>'
        )
        if n <= 16 or index % max(1, n // 14) == 0:
            parts.append(
                f'<text x="{LEFT + index * step + step / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle" class="axis">{escape(day[5:])}</text>'
            )
    for offset, series in enumerate(lines):
        points = [
            f"{LEFT + i * step + step / 2:.1f},{TOP + plot_h * (1 - v):.1f}"
            for i, v in enumerate(series.values)
            if v is not None
        ]
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{series.colour}" stroke-width="2" points="{" ".join(points)}"/>'
            )
        parts.append(
            f'<text x="{LEFT + offset * 160}" y="{HEIGHT - 6}" fill="{series.colour}" class="legend">'
            f"■ {escape(series.label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
