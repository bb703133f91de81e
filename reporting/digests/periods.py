"""When a digest is due and which days it covers, in its own time zone.

A period is whole calendar days in the digest's time zone, ending the day before
the send day: a daily digest sent on the 8th covers the 7th, a weekly one sent
on Monday the 8th covers Monday the 1st to Sunday the 7th. The previous period
is the same number of days just before it.
"""

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from reporting.models import Digest


@dataclass(frozen=True)
class Period:
    """Inclusive first and last day, in the digest's time zone."""

    start: datetime.date
    end: datetime.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> "Period":
        length = datetime.timedelta(days=self.days)
        return Period(self.start - length, self.end - length)

    def describe(self) -> str:
        if self.start == self.end:
            return self.start.strftime("%a %d %b %Y")
        return f"{self.start:%a %d %b} to {self.end:%a %d %b %Y}"


def zone_of(name: str) -> ZoneInfo:
    """The digest's time zone; a ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone") from None


def known_zone(name: str) -> bool:
    return name in available_timezones()


def digest_length(digest: Digest) -> int:
    return 7 if digest.every == Digest.Every.WEEK else 1


def digest_last_send_time(
    digest: Digest, *, now: datetime.datetime
) -> datetime.datetime:
    """The latest scheduled send time at or before `now`, as an aware UTC instant."""
    zone = zone_of(digest.timezone)
    local = now.astimezone(zone)
    if digest.every == Digest.Every.WEEK:
        back = (local.weekday() - digest.weekday) % 7
        tick = _at(local.date() - datetime.timedelta(days=back), digest.at, zone)
        if tick > now:
            tick = _at(
                local.date() - datetime.timedelta(days=back + 7), digest.at, zone
            )
    else:
        tick = _at(local.date(), digest.at, zone)
        if tick > now:
            tick = _at(local.date() - datetime.timedelta(days=1), digest.at, zone)
    return tick.astimezone(datetime.UTC)


def digest_next_send_time(
    digest: Digest, *, now: datetime.datetime
) -> datetime.datetime:
    """The first scheduled send time after `now` (UTC)."""
    last = digest_last_send_time(digest, now=now)
    zone = zone_of(digest.timezone)
    day = last.astimezone(zone).date() + datetime.timedelta(days=digest_length(digest))
    return _at(day, digest.at, zone).astimezone(datetime.UTC)


def period_sent_at(digest: Digest, send_time: datetime.datetime) -> Period:
    """The period a send at `send_time` covers: whole days before its local day."""
    day = send_time.astimezone(zone_of(digest.timezone)).date()
    return Period(
        day - datetime.timedelta(days=digest_length(digest)),
        day - datetime.timedelta(days=1),
    )


def digest_last_complete_period(digest: Digest, *, now: datetime.datetime) -> Period:
    """The latest period of the digest's schedule whose days are all past by
    `now` (what a preview shows): a weekly Monday digest on a Wednesday shows
    Monday to Sunday of the week before, even before its send time."""
    today = now.astimezone(zone_of(digest.timezone)).date()
    back = 0
    if digest.every == Digest.Every.WEEK:
        back = (today.weekday() - digest.weekday) % 7
    send_day = today - datetime.timedelta(days=back)
    return Period(
        send_day - datetime.timedelta(days=digest_length(digest)),
        send_day - datetime.timedelta(days=1),
    )


def _at(day: datetime.date, at: datetime.time, zone: ZoneInfo) -> datetime.datetime:
    # A wall time skipped in spring (02:30 on the day clocks go forward) reads
    # with the offset before the gap: the instant just after it, so no digest is
    # skipped that day.
    return datetime.datetime.combine(day, at, zone)
