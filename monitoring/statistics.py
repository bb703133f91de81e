"""The decision rule of a monitor: a Wilson score interval around the observed
rate, and when that interval says the rate is beyond the threshold.

A rate from a small sample is noisy: 3 returns out of 10 deliveries is a 30 %
return rate that says little. A monitor fires only when the whole interval at
its `confidence` lies beyond the threshold, so a handful of unlucky deliveries
does not page anyone; it resolves when the point estimate is back inside, so a
rate hovering near the threshold does not flap (the interval is the hysteresis).
"""

import math
from dataclasses import dataclass
from statistics import NormalDist

ABOVE = "above"
BELOW = "below"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def normal_quantile(confidence: float) -> float:
    """z such that a standard normal lies within ±z with probability `confidence`."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, trials: int, *, confidence: float) -> Interval:
    """The Wilson score interval of a proportion `successes / trials`.

    Unlike the textbook p ± z·√(p(1-p)/n) it stays inside [0, 1] and does not
    collapse to a point at 0 or n successes, which is where a monitor on a
    small source lives. `successes` may be fractional (a rescaled mean)."""
    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError("successes must lie between 0 and the number of trials")
    z = normal_quantile(confidence)
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    spread = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials**2))
    return Interval(low=max(0.0, centre - spread), high=min(1.0, centre + spread))


def beyond(value: float, *, op: str, threshold: float) -> bool:
    """Whether `value` is strictly beyond the threshold (at it is inside)."""
    return value > threshold if op == ABOVE else value < threshold


def interval_beyond(interval: Interval, *, op: str, threshold: float) -> bool:
    """Whether the whole interval lies beyond the threshold."""
    edge = interval.low if op == ABOVE else interval.high
    return beyond(edge, op=op, threshold=threshold)
