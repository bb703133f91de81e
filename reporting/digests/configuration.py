"""The `digests` list of the configuration document (docs/configuration.md)."""

import datetime
from collections.abc import Sequence

from feedback.configuration import Problem, Section
from reporting.digests.selectors import digest_batch_config
from reporting.digests.services import digest_problems, digest_save
from reporting.models import Digest
from sources.configuration.base import (
    SLUG_SCHEMA,
    WEEKDAYS,
    Document,
    JsonPath,
    object_schema,
)
from sources.models import FeedbackConfig, Source

# Where each problem of digest_problems() lives in the document.
FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "timezone": ("schedule", "timezone"),
    "recipients": ("recipients",),
    "channel": ("channel",),
}


def item_schema() -> Document:
    return object_schema(
        {
            "slug": SLUG_SCHEMA,
            "source": {"type": "string", "minLength": 1},
            "enabled": {"type": "boolean"},
            "schedule": object_schema(
                {
                    "every": {"enum": [e.value for e in Digest.Every]},
                    "at": {
                        "type": "string",
                        "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
                        "x-message": "must be a 24-hour time, e.g. '08:00'",
                    },
                    "day": {"enum": list(WEEKDAYS)},
                    "timezone": {"type": "string", "minLength": 1},
                },
                required=["every"],
            ),
            "channel": {"enum": [c.value for c in Digest.Channel]},
            "recipients": {"type": "array", "items": {"type": "string"}},
        },
        required=["slug", "source", "schedule"],
    )


def normalise(item: Document) -> Document:
    schedule = dict(item.get("schedule") or {})
    every = schedule.get("every", Digest.Every.WEEK.value)
    normalised_schedule = {
        "every": every,
        "at": schedule.get("at", "08:00"),
        "timezone": schedule.get("timezone", "UTC"),
    }
    if every == Digest.Every.WEEK:
        normalised_schedule["day"] = schedule.get("day", WEEKDAYS[0])
    return {
        "slug": item["slug"],
        "source": item.get("source"),
        "enabled": item.get("enabled", True),
        "schedule": normalised_schedule,
        "channel": item.get("channel", Digest.Channel.EMAIL.value),
        "recipients": list(item.get("recipients") or []),
    }


def as_document(digest: Digest) -> Document:
    schedule: Document = {
        "every": digest.every,
        "at": digest.at.strftime("%H:%M"),
        "timezone": digest.timezone,
    }
    if digest.every == Digest.Every.WEEK:
        schedule["day"] = WEEKDAYS[digest.weekday]
    return {
        "slug": digest.slug,
        "source": digest.source.slug,
        "enabled": digest.enabled,
        "schedule": schedule,
        "channel": digest.channel,
        "recipients": list(digest.recipients or []),
    }


def problems(item: Document, path: JsonPath, document: Document) -> list[Problem]:
    """The source must exist (in the file or the database); the time zone and
    recipients must be valid; the batch channel needs a batch config."""
    found: list[Problem] = []
    slug = item.get("source")
    if not isinstance(slug, str):
        return found
    in_file = next(
        (
            source
            for source in document.get("sources") or []
            if isinstance(source, dict) and source.get("slug") == slug
        ),
        None,
    )
    stored = Source.objects.filter(slug=slug).first()
    if in_file is None and stored is None:
        return [Problem((*path, "source"), f"no source {slug!r} in the file or stored")]
    normalised = normalise(item) if isinstance(item.get("schedule"), dict) else None
    if normalised is None:
        return found
    channel = normalised["channel"]
    for field, message in digest_problems(
        source=None,
        channel=channel,
        timezone_name=normalised["schedule"]["timezone"],
        recipients=normalised["recipients"],
    ):
        found.append(Problem((*path, *FIELD_PATHS[field]), message))
    if channel == Digest.Channel.BATCH:
        # A source the file defines gets the file's feedback configs.
        if in_file is not None:
            has_batch = any(
                isinstance(c, dict) and c.get("method") == FeedbackConfig.Method.BATCH
                for c in in_file.get("feedback") or []
            )
        else:
            has_batch = stored is not None and bool(
                digest_batch_config(source_id=stored.pk)
            )
        if not has_batch:
            found.append(
                Problem(
                    (*path, "channel"),
                    f"source {slug!r} has no batch feedback config to send through",
                )
            )
    return found


def export() -> list[Document]:
    return [
        as_document(d) for d in Digest.objects.select_related("source").order_by("slug")
    ]


def current(slugs: Sequence[str], lock: bool) -> dict[str, Document]:
    digests = Digest.objects.select_related("source").filter(slug__in=slugs)
    if lock:
        digests = digests.select_for_update(of=("self",))
    return {d.slug: as_document(d) for d in digests}


def save(item: Document) -> None:
    schedule = item["schedule"]
    digest_save(
        slug=item["slug"],
        source=Source.objects.get(slug=item["source"]),
        enabled=item["enabled"],
        every=schedule["every"],
        weekday=WEEKDAYS.index(schedule.get("day", WEEKDAYS[0])),
        at=datetime.time.fromisoformat(schedule["at"]),
        timezone_name=schedule["timezone"],
        channel=item["channel"],
        recipients=item["recipients"],
    )


DIGESTS = Section(
    key="digests",
    entity="digest",
    label="Digests",
    item_schema=item_schema,
    problems=problems,
    export=export,
    current=current,
    save=save,
    normalise=normalise,
    # After sources (built in) and after lists other sections may define.
    order=300,
)
