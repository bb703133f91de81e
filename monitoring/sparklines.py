"""A monitor's metric per day as a small inline SVG, drawn on the server.

Days with nothing to measure are left out, not drawn as zeros; the threshold
is a dashed line, so whether the metric crossed it reads without colour. Each
SVG has a title and a description for screen readers."""

import datetime
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 120, 32, 3


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

    # Days with nothing measured are skipped, not drawn as zeros: the line
    # joins the days that have a value, and each of them has a dot.
    points = [
        (PAD + index * step, y(value))
        for index, (_, value) in enumerate(days)
        if value is not None
    ]
    parts = [
        f'<svg class="sparkline" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title><desc>{escape(describe)}</desc>",
        f'<line x1="0" x2="{WIDTH}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
        'stroke="currentColor" stroke-opacity="0.6" stroke-dasharray="3 2"/>',
    ]
    if len(points) > 1:
        joined = " ".join(f"{x:.1f},{py:.1f}" for x, py in points)
        parts.append(
            f'<polyline points="{joined}" fill="none" stroke="#417690" '
            'stroke-width="1.5" stroke-linejoin="round"/>'
        )
    parts.extend(
        f'<circle cx="{x:.1f}" cy="{py:.1f}" r="2" fill="#417690"/>' for x, py in points
    )
    if not values:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 + 4}" text-anchor="middle" '
            'font-size="10" fill="currentColor">no data</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
