"""Monitors as code: the `monitors` section of the configuration document
(DESIGN §9, §11), registered from MonitoringConfig.ready()."""

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from feedback.configuration import Section
from feedback.models import Buyer, Flow
from monitoring.actions import notify_url_problem
from monitoring.models import Monitor
from sources.configuration.base import (
    NAME_SCHEMA,
    REDACTED,
    SLUG_SCHEMA,
    Document,
    JsonPath,
    Problem,
    dict_items,
    object_schema,
    tagged_schema,
)
from sources.models import Source

Metric = Monitor.Metric
# The values a threshold may take, per metric (rates are fractions).
THRESHOLD_RANGES: dict[str, tuple[float, float | None]] = {
    Metric.RETURN_RATE: (0, 1),
    Metric.CONVERSION_RATE: (0, 1),
    Metric.FEEDBACK_COVERAGE: (0, 1),
    Metric.FORWARDING_FAILURE_RATE: (0, 1),
    Metric.AVERAGE_QUALITY: (1, 5),
    Metric.DEAD_NOTIFICATIONS: (0, None),
}
DEFAULT_CONDITION = {"op": "above", "min_sample": 50, "confidence": 0.95}
DEFAULT_WINDOW_DAYS = 14
SCOPE_MODELS: dict[str, Any] = {"source": Source, "buyer": Buyer, "flow": Flow}


def monitor_schema() -> Document:
    return object_schema(
        {
            "slug": SLUG_SCHEMA,
            "name": NAME_SCHEMA,
            "scope": object_schema(dict.fromkeys(SCOPE_MODELS, SLUG_SCHEMA)),
            "metric": {"enum": list(Metric.values)},
            "window_days": {"type": "integer", "minimum": 1, "maximum": 366},
            "basis": {"enum": list(Monitor.Basis.values)},
            "condition": object_schema(
                {
                    "op": {"enum": list(Monitor.Op.values)},
                    "threshold": {"type": "number"},
                    "min_sample": {"type": "integer", "minimum": 1},
                    "confidence": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "exclusiveMaximum": 1,
                    },
                },
                required=["threshold"],
            ),
            "actions": {
                "type": "array",
                "items": tagged_schema(
                    "type",
                    {
                        "email": object_schema(
                            {
                                "to": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"type": "string"},
                                }
                            },
                            required=["to"],
                        ),
                        "webhook": object_schema({}),
                        "notify": object_schema(
                            {"url": {"type": "string", "minLength": 1}},
                            required=["url"],
                        ),
                        "pause_source": object_schema({}),
                    },
                ),
            },
        },
        required=["slug", "name", "metric", "condition"],
    )


def _known(document: Document, name: str) -> set[Any]:
    """Slugs of `name` (source, buyer, flow) defined in the document itself."""
    if name == "source":
        return {s.get("slug") for _, s in dict_items(document.get("sources"))}
    if name == "buyer":
        return {b.get("slug") for _, b in dict_items(document.get("buyers"))}
    return {
        entry.get("flow")
        for _, buyer in dict_items(document.get("buyers"))
        for _, entry in dict_items(buyer.get("flow_policies"))
    }


def monitor_problems(
    item: Document, path: JsonPath, document: Document
) -> list[Problem]:
    """What the schema cannot say: that the scope exists, the threshold fits
    the metric, and each action can run."""
    problems: list[Problem] = []
    scope: dict[str, Any] = item["scope"] if isinstance(item.get("scope"), dict) else {}
    for name, model in SCOPE_MODELS.items():
        slug = scope.get(name)
        if (
            isinstance(slug, str)
            and slug not in _known(document, name)
            and not model.objects.filter(slug=slug).exists()
        ):
            problems.append(Problem((*path, "scope", name), f"no {name} {slug!r}"))
    condition = item.get("condition")
    metric = item.get("metric")
    if isinstance(condition, dict) and metric in THRESHOLD_RANGES:
        threshold = condition.get("threshold")
        low, high = THRESHOLD_RANGES[metric]
        if isinstance(threshold, int | float) and not (
            low <= threshold and (high is None or threshold <= high)
        ):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            problems.append(
                Problem(
                    (*path, "condition", "threshold"),
                    f"must be {span} for {metric}",
                )
            )
    for index, action in dict_items(item.get("actions")):
        where = (*path, "actions", index)
        kind = action.get("type")
        if kind == "pause_source" and not isinstance(scope.get("source"), str):
            problems.append(
                Problem((*where, "type"), "pause_source needs a source in the scope")
            )
        if kind == "email" and isinstance(action.get("to"), list):
            for n, address in enumerate(action["to"]):
                try:
                    validate_email(address)
                except (ValidationError, TypeError):
                    problems.append(
                        Problem(
                            (*where, "to", n), f"{address!r} is not an email address"
                        )
                    )
        url = action.get("url")
        if kind == "notify" and isinstance(url, str) and url and url != REDACTED:
            problem = notify_url_problem(url)
            if problem:
                problems.append(Problem((*where, "url"), problem))
    return problems


def monitor_normalise(item: Document) -> Document:
    """An input monitor with every default filled in, as exported."""
    return {
        "slug": item["slug"],
        "name": item["name"],
        "scope": {
            k: item["scope"][k] for k in SCOPE_MODELS if k in item.get("scope", {})
        },
        "metric": item["metric"],
        "window_days": item.get("window_days", DEFAULT_WINDOW_DAYS),
        "basis": item.get("basis", Monitor.Basis.DELIVERY.value),
        "condition": {**DEFAULT_CONDITION, **item["condition"]},
        "actions": [dict(action) for action in item.get("actions", [])],
    }


def monitor_document(monitor: Monitor) -> Document:
    scope = {
        name: getattr(monitor, name).slug
        for name in SCOPE_MODELS
        if getattr(monitor, f"{name}_id") is not None
    }
    return {
        "slug": monitor.slug,
        "name": monitor.name,
        "scope": scope,
        "metric": monitor.metric,
        "window_days": monitor.window_days,
        "basis": monitor.basis,
        "condition": {
            "op": monitor.op,
            "threshold": monitor.threshold,
            "min_sample": monitor.min_sample,
            "confidence": monitor.confidence,
        },
        "actions": [dict(action) for action in monitor.actions],
    }


def _monitors() -> Any:
    return Monitor.objects.select_related("source", "buyer", "flow").order_by("slug")


def monitors_export() -> list[Document]:
    return [monitor_document(m) for m in _monitors()]


def monitors_current(slugs: Sequence[str], lock: bool) -> dict[str, Document]:
    rows = _monitors().filter(slug__in=slugs)
    if lock:
        rows = rows.select_for_update(of=("self",))
    return {m.slug: monitor_document(m) for m in rows}


def monitor_save_document(item: Document) -> None:
    from monitoring.services import monitor_save

    monitor_save(item=item)


MONITORS = Section(
    key="monitors",
    entity="monitor",
    label="Monitors",
    item_schema=monitor_schema,
    problems=monitor_problems,
    export=monitors_export,
    current=monitors_current,
    save=monitor_save_document,
    normalise=monitor_normalise,
    # Apprise URLs carry the service's tokens (slack://T…/B…/secret).
    secret_paths=(("actions", "*", "url"),),
    order=200,
)
