"""A monitor's metric per day as a small inline SVG, drawn on the server.

Days with nothing to measure are gaps in the line, not zeros; the threshold
is a dashed line, so whether the metric crossed it reads without colour. Each
SVG has a title and a description for screen readers."""

import datetime
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 140, 32, 3


def sparkline(
    days: Sequence[tuple[datetime.date, float | None]],
    *,
    threshold: float,
    title: str,
    describe: str,
) -> SafeString:
    """Values per day, threshold dashed; `describe` says the values in words."""
    values = [v for _, v in days if v is not None]
    low = min([*values, threshold])
    high = max([*values, threshold])
    if high == low:
        high = low + 1
    step = (WIDTH - 2 * PAD) / max(1, len(days) - 1)

    def y(value: float) -> float:
        return PAD + (HEIGHT - 2 * PAD) * (1 - (value - low) / (high - low))

    segments: list[list[str]] = [[]]
    for index, (_, value) in enumerate(days):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{PAD + index * step:.1f},{y(value):.1f}")
    parts = [
        f'<svg class="sparkline" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title><desc>{escape(describe)}</desc>",
        f'<line x1="0" x2="{WIDTH}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
        'stroke="currentColor" stroke-opacity="0.5" stroke-dasharray="3 2"/>',
    ]
    for points in segments:
        if len(points) == 1:
            x, py = points[0].split(",")
            parts.append(f'<circle cx="{x}" cy="{py}" r="1.8" fill="#417690"/>')
        elif points:
            parts.append(
                f'<polyline points="{" ".join(points)}" fill="none" '
                'stroke="#417690" stroke-width="1.6" stroke-linejoin="round"/>'
            )
    if not values:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 + 4}" text-anchor="middle" '
            'font-size="10" fill="currentColor">no data</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
