"""The Wilson interval and the firing rule, against intervals computed by hand.

Each expected interval was worked out from the closed form
    (p + z²/2n ± z·√(p(1-p)/n + z²/4n²)) / (1 + z²/n)
with z = 1.959964 (95 %) or 1.644854 (90 %), to four decimals.
"""

import pytest

from monitoring.metrics import Counts, reading
from monitoring.models import Alert, Monitor
from monitoring.services import monitor_decide
from monitoring.statistics import (
    Interval,
    interval_beyond,
    normal_quantile,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "trials", "confidence", "low", "high"),
    [
        (0, 10, 0.95, 0.0, 0.2775),  # no successes: the interval still has width
        (10, 10, 0.95, 0.7225, 1.0),
        (1, 10, 0.95, 0.0179, 0.4042),
        (3, 10, 0.95, 0.1078, 0.6032),
        (5, 10, 0.95, 0.2366, 0.7634),
        (30, 100, 0.95, 0.2189, 0.3958),
        (50, 100, 0.95, 0.4038, 0.5962),
        (20, 100, 0.90, 0.1425, 0.2733),
        (1, 1, 0.95, 0.2065, 1.0),
    ],
)
def test_wilson_interval_matches_the_hand_computed_one(
    successes, trials, confidence, low, high
):
    interval = wilson_interval(successes, trials, confidence=confidence)
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("confidence", "z"), [(0.95, 1.959964), (0.90, 1.644854), (0.99, 2.575829)]
)
def test_normal_quantile(confidence, z):
    assert normal_quantile(confidence) == pytest.approx(z, abs=1e-6)


@pytest.mark.parametrize(
    ("successes", "trials", "confidence"),
    [(1, 0, 0.95), (11, 10, 0.95), (-1, 10, 0.95), (1, 10, 1.0), (1, 10, 0.0)],
)
def test_impossible_inputs_are_refused(successes, trials, confidence):
    with pytest.raises(ValueError, match=r"must|needs"):
        wilson_interval(successes, trials, confidence=confidence)


@pytest.mark.parametrize(
    ("interval", "op", "threshold", "expected"),
    [
        (Interval(0.16, 0.30), "above", 0.15, True),
        (Interval(0.15, 0.30), "above", 0.15, False),  # touching is not beyond
        (Interval(0.10, 0.30), "above", 0.15, False),
        (Interval(0.01, 0.04), "below", 0.05, True),
        (Interval(0.01, 0.05), "below", 0.05, False),
    ],
)
def test_whole_interval_beyond(interval, op, threshold, expected):
    assert interval_beyond(interval, op=op, threshold=threshold) is expected


def monitor(state="ok", **fields):
    values = {
        "slug": "m",
        "name": "M",
        "metric": Monitor.Metric.RETURN_RATE,
        "op": "above",
        "threshold": 0.15,
        "min_sample": 50,
        "confidence": 0.95,
        "state": state,
    }
    values.update(fields)
    return Monitor(**values)


@pytest.mark.parametrize(
    ("case", "state", "returns", "delivered", "fields", "expected"),
    [
        ("no data", "ok", 0, 0, {}, None),
        ("no data while firing keeps firing", "firing", 0, 0, {}, None),
        ("clearly above, enough sample", "ok", 30, 100, {}, "firing"),
        # 75 % returns, interval [0.59, 0.86], but 40 < min_sample 50.
        ("min_sample not reached", "ok", 30, 40, {}, None),
        # A small noisy sample: 3 of 10 is 30 % (twice the threshold), but the
        # interval [0.108, 0.603] reaches below 15 %.
        ("small noisy sample", "ok", 3, 10, {"min_sample": 10}, None),
        ("at the threshold does not fire", "ok", 15, 100, {}, None),
        ("at the threshold resolves", "firing", 15, 100, {}, "resolved"),
        # Above the threshold but the interval crosses it: stays as it is
        # either way (the hysteresis band).
        ("inside the band stays ok", "ok", 20, 100, {}, None),
        ("inside the band stays firing", "firing", 20, 100, {}, None),
        ("back under resolves", "firing", 10, 100, {}, "resolved"),
        # Resolving needs no min_sample: the estimate is what it is.
        ("resolves on a small sample", "firing", 1, 10, {}, "resolved"),
        (
            "below: a low rate fires",
            "ok",
            2,
            200,
            {"op": "below", "threshold": 0.05},
            "firing",
        ),
        (
            "below: at the threshold resolves",
            "firing",
            10,
            200,
            {"op": "below", "threshold": 0.05},
            "resolved",
        ),
    ],
)
def test_monitor_decide(case, state, returns, delivered, fields, expected):
    m = monitor(state=state, **fields)
    got = reading(m, Counts(returns=returns, delivered=delivered))
    assert monitor_decide(monitor=m, value=got) == expected, case


def test_average_quality_reads_a_bounded_mean():
    m = monitor(metric=Monitor.Metric.AVERAGE_QUALITY, threshold=2.5, op="below")
    # 100 scores averaging 2.0: rescaled to [0, 1] that is 25 of 100, whose
    # interval [0.1754, 0.3430] maps back to [1.7016, 2.3720].
    got = reading(m, Counts(quality_sum=200, quality_count=100))
    assert got.value == 2.0
    assert got.interval.low == pytest.approx(1.7016, abs=5e-4)
    assert got.interval.high == pytest.approx(2.3720, abs=5e-4)
    assert got.sample == 100
    assert monitor_decide(monitor=m, value=got) == Alert.State.FIRING


def test_dead_notifications_are_a_count():
    m = monitor(metric=Monitor.Metric.DEAD_NOTIFICATIONS, threshold=2, min_sample=1)
    got = reading(m, Counts(notifications=40, dead=3))
    assert (got.value, got.interval, got.sample) == (3.0, Interval(3.0, 3.0), 40)
    assert monitor_decide(monitor=m, value=got) == Alert.State.FIRING
    at = reading(m, Counts(notifications=40, dead=2))
    assert monitor_decide(monitor=m, value=at) is None
