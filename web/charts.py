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
    shown: Sequence[str] | None = None  # each value as its dot's tooltip says it (default: a percentage)


def daily_chart(days: Sequence[str], volumes: Sequence[int], lines: Sequence[Series], title: str) -> str:
    """Volume bars (left axis) and rate lines (right axis, 0-100%) per day (or per week or month: a label
    that is not a whole date is written whole); safe to embed as markup."""
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
                f'text-anchor="middle" class="axis">{escape(day[5:] if len(day) == 10 else day)}</text>'
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
        for i, v in enumerate(series.values):  # a dot per value: a lone day still shows, and says its value
            if v is not None:
                parts.append(
                    f'<circle cx="{LEFT + i * step + step / 2:.1f}" cy="{TOP + plot_h * (1 - v):.1f}" r="3" '
                    f'fill="{series.colour}"><title>{escape(days[i])} · {escape(series.label)}: '
                    f"{escape(series.shown[i]) if series.shown else f'{100 * v:.0f}%'}</title></circle>"
                )
        parts.append(
            f'<text x="{LEFT + offset * 160}" y="{HEIGHT - 6}" fill="{series.colour}" class="legend">'
            f"■ {escape(series.label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Bar:
    label: str
    parts: Sequence[int]  # stacked left to right, coloured by the chart's `colours`
    note: str = ""  # written after the bar (a rate, the NPS)


def bar_chart(bars: Sequence[Bar], colours: Sequence[tuple[str, str]], title: str) -> str:
    """Horizontal stacked bars, one row per project, store or promoter, longest = the busiest; a legend of
    (label, colour) below. Safe to embed as markup."""
    row_h, label_w, note_w = 22, 200, 150
    height = TOP + row_h * max(len(bars), 1) + 28
    plot_w = WIDTH - label_w - note_w
    top = max([sum(b.parts) for b in bars] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'class="chart bars" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, bar in enumerate(bars):
        y = TOP + index * row_h
        label = bar.label if len(bar.label) <= 30 else bar.label[:29] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="axis">{escape(label)}</text>'
        )
        x = float(label_w)
        for value, (name, colour) in zip(bar.parts, colours, strict=False):
            if value <= 0:
                continue
            width = plot_w * value / top
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" fill="{colour}">'
                f"<title>{escape(bar.label)} · {escape(name)}: {value}</title></rect>"
            )
            x += width
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + 15}" class="axis">{sum(bar.parts)}'
            f"{' · ' + escape(bar.note) if bar.note else ''}</text>"
        )
    legend_y = height - 8
    for offset, (name, colour) in enumerate(colours):
        parts.append(
            f'<text x="{label_w + offset * 130}" y="{legend_y}" fill="{colour}" class="legend">'
            f"■ {escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
