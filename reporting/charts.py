"""Charts as inline SVG, drawn on the server: no script, no CDN, no colour code.

Every bar carries its value as text and every line its name at its end, with its
own dash pattern and marker shape, so a chart reads the same in greyscale, printed
or through a screen reader (each SVG has a title and a description).
"""

import datetime
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 200
PLOT_WIDTH = 420
VALUE_WIDTH = 70


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    description: str,
    value_text: Callable[[float], str] = _number,
) -> SafeString:
    """Horizontal bars, hatched, with the label on the left and the value at the
    bar's end (as `value_text` writes it: money keeps its cents)."""
    height = max(1, len(items)) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    largest = max((value for _, value in items), default=0) or 1
    parts = [
        f'<svg class="report-chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>",
        '<defs><pattern id="hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#dfe9f0"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#417690" stroke-width="3"/>'
        "</pattern></defs>",
    ]
    if not items:
        parts.append(
            f'<text x="{LABEL_WIDTH}" y="{BAR_HEIGHT}" class="chart-empty">'
            "Nothing to draw for these filters.</text>"
        )
    for index, (label, value) in enumerate(items):
        y = BAR_GAP + index * (BAR_HEIGHT + BAR_GAP)
        bar = PLOT_WIDTH * value / largest
        text_y = y + BAR_HEIGHT * 0.7
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{text_y:.1f}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{bar:.1f}" '
            f'height="{BAR_HEIGHT}" fill="url(#hatch)" stroke="#264b5d"/>'
            f'<text x="{LABEL_WIDTH + bar + 6:.1f}" y="{text_y:.1f}">'
            f"{escape(value_text(value))}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


# Line styles told apart without colour: dash pattern and marker shape.
STYLES = (
    ("", "circle"),
    ("8 4", "square"),
    ("2 3", "triangle"),
)


def _marker(shape: str, x: float, y: float) -> str:
    if shape == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6"/>'
    if shape == "triangle":
        return (
            f'<polygon points="{x:.1f},{y - 4:.1f} {x - 4:.1f},{y + 3:.1f} '
            f'{x + 4:.1f},{y + 3:.1f}"/>'
        )
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"/>'


def _spread(positions: list[float], gap: float = 13) -> list[float]:
    """Move end labels apart so two lines ending at one value stay readable."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = list(positions)
    for previous, current in itertools.pairwise(order):
        placed[current] = max(placed[current], placed[previous] + gap)
    return placed


def line_chart(
    days: Sequence[datetime.date],
    series: Sequence[Series],
    *,
    title: str,
    description: str,
) -> SafeString:
    """One line per series over the days, each named at its end and in a legend."""
    width, height = 760, 260
    left, right, top, bottom = 50, 130, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    largest = max((max(s.values, default=0) for s in series), default=0) or 1
    count = max(len(days), 1)

    def x_of(index: int) -> float:
        return left + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * value / largest

    parts = [
        f'<svg class="report-chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}" stroke="#666"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#666"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">'
        f"{escape(_number(largest))}</text>",
        f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end">0</text>',
    ]
    if days:
        parts.append(
            f'<text x="{left}" y="{height - 12}">{days[0].isoformat()}</text>'
            f'<text x="{left + plot_w}" y="{height - 12}" text-anchor="end">'
            f"{days[-1].isoformat()}</text>"
        )
    # Markers on every point would blur a year of days; mark a point a week then.
    step = 1 if count <= 62 else 7
    end_labels = _spread([y_of(s.values[-1]) + 4 if s.values else 0 for s in series])
    legend_y = 14
    for index, line in enumerate(series):
        dash, shape = STYLES[index % len(STYLES)]
        points = " ".join(
            f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(line.values)
        )
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<g class="series" fill="#264b5d"><polyline points="{points}" '
            f'fill="none" stroke="#264b5d" stroke-width="2"{dash_attr}/>'
        )
        parts.extend(
            _marker(shape, x_of(i), y_of(v))
            for i, v in enumerate(line.values)
            if i % step == 0 or i == len(line.values) - 1
        )
        if line.values:
            parts.append(
                f'<text x="{x_of(len(line.values) - 1) + 8:.1f}" '
                f'y="{end_labels[index]:.1f}">{escape(line.name)}</text>'
            )
        legend_x = left + index * 170
        parts.append(
            f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 30}" '
            f'y2="{legend_y - 4}" stroke="#264b5d" stroke-width="2"{dash_attr}/>'
            + _marker(shape, legend_x + 15, legend_y - 4)
            + f'<text x="{legend_x + 36}" y="{legend_y}">'
            f"{escape(line.name)} (total {escape(_number(sum(line.values)))})</text>"
        )
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
