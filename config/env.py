"""Typed readers for settings taken from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise ImproperlyConfigured(f"{name} must be a finite number ≥ 0, not {raw!r}")
    return value


def env_float_list(name: str, default: list[float]) -> list[float]:
    """Comma-separated non-negative numbers, e.g. "0,5,300"."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    values = []
    for item in raw.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated numbers, not {raw!r}"
            ) from None
        if value < 0 or value != value or value == float("inf"):
            raise ImproperlyConfigured(f"{name}: {item.strip()!r} is not ≥ 0")
        values.append(value)
    return values


_PERIODS = {"s": 1, "min": 60, "h": 3600, "day": 86400}


def env_rate(name: str, default: str) -> tuple[int, int]:
    """A rate limit as "<requests>/<s|min|h|day>", e.g. "600/min" → (600, 60)."""
    raw = os.environ.get(name)
    text = default if raw is None or raw.strip() == "" else raw
    count, _, period = text.strip().partition("/")
    try:
        requests = int(count)
        seconds = _PERIODS[period.strip()]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"{name} must be a rate like 600/min (per s, min, h or day), not {raw!r}"
        ) from None
    if requests < 1:
        raise ImproperlyConfigured(f"{name} must allow at least 1 request, not {raw!r}")
    return requests, seconds
