"""The alerts page's sparkline: a line through the days that have a value."""

import datetime
import re

import pytest

from monitoring.sparklines import HEIGHT, PAD, WIDTH, sparkline

D = datetime.date(2026, 12, 1)


def days(*values):
    return [(D + datetime.timedelta(days=n), v) for n, v in enumerate(values)]


def points(svg):
    match = re.search(r'<polyline points="([^"]+)"', svg)
    return (
        [tuple(map(float, p.split(","))) for p in match.group(1).split()]
        if match
        else []
    )


@pytest.mark.parametrize(
    ("values", "line_points", "dots"),
    [
        ((0.1, 0.2, 0.3), 3, 3),
        ((0.1, None, 0.3), 2, 2),  # a day without data is skipped, not a zero
        ((None, 0.2, None), 0, 1),  # one value: a dot, no line
        ((None, None), 0, 0),
    ],
)
def test_days_without_data_are_left_out(values, line_points, dots):
    svg = str(sparkline(days(*values), threshold=0.15, title="t", describe="d"))
    assert len(points(svg)) == line_points
    assert svg.count("<circle") == dots
    assert ("no data" in svg) is (dots == 0)


def test_values_and_threshold_share_the_scale():
    svg = str(sparkline(days(0.0, 0.3), threshold=0.15, title="t", describe="d"))
    (x0, y0), (x1, y1) = points(svg)
    assert (x0, x1) == (PAD, WIDTH - PAD)
    assert (y0, y1) == (HEIGHT - PAD, PAD)  # the lowest at the bottom
    threshold_y = float(re.search(r'<line [^>]*y1="([\d.]+)"', svg).group(1))
    assert threshold_y == pytest.approx(HEIGHT / 2)


def test_title_and_description_are_escaped():
    svg = str(sparkline(days(0.1), threshold=0.2, title="<b>", describe="a & b"))
    assert "<title>&lt;b&gt;</title>" in svg
    assert "<desc>a &amp; b</desc>" in svg
