"""Suppression lists as code: the `suppression_lists` section of the
configuration document (DESIGN §9, §11).

    {"slug": "returns", "name": "Returned leads", "ttl_days": 365,
     "add_on": {"kinds": ["return"], "reasons": []}}
"""

from collections.abc import Sequence

from feedback.configuration.sections import Section
from feedback.suppression.models import SuppressionList
from feedback.suppression.services import suppression_list_save
from sources.configuration.base import Document, JsonPath, Problem, object_schema
from sources.models import Kind

MAX_REASON_LENGTH = 500


def item_schema() -> Document:
    return object_schema(
        {
            "slug": {"type": "string", "minLength": 1, "maxLength": 100},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "ttl_days": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 36500,
            },
            "add_on": object_schema(
                {
                    "kinds": {
                        "type": "array",
                        "items": {"enum": [kind.value for kind in Kind]},
                        "uniqueItems": True,
                    },
                    "reasons": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_REASON_LENGTH,
                        },
                        "uniqueItems": True,
                    },
                },
                required=["kinds"],
            ),
        },
        required=["slug", "name"],
    )


def problems(item: Document, path: JsonPath, document: Document) -> list[Problem]:
    # The schema says everything a list can get wrong.
    return []


def normalise(item: Document) -> Document:
    add_on = item.get("add_on") or {}
    return {
        "slug": item["slug"],
        "name": item.get("name", ""),
        "ttl_days": item.get("ttl_days"),
        "add_on": {
            "kinds": list(add_on.get("kinds", [])),
            "reasons": list(add_on.get("reasons", [])),
        },
    }


def as_document(row: SuppressionList) -> Document:
    return {
        "slug": row.slug,
        "name": row.name,
        "ttl_days": row.ttl_days,
        "add_on": {"kinds": list(row.add_kinds), "reasons": list(row.add_reasons)},
    }


def export() -> list[Document]:
    return [as_document(row) for row in SuppressionList.objects.order_by("slug")]


def current(slugs: Sequence[str], lock: bool) -> dict[str, Document]:
    rows = SuppressionList.objects.filter(slug__in=list(slugs))
    if lock:
        rows = rows.select_for_update()
    return {row.slug: as_document(row) for row in rows}


def save(item: Document) -> None:
    suppression_list_save(
        slug=item["slug"],
        name=item["name"],
        ttl_days=item["ttl_days"],
        add_kinds=item["add_on"]["kinds"],
        add_reasons=item["add_on"]["reasons"],
    )


SECTION = Section(
    key="suppression_lists",
    entity="suppression list",
    label="Suppression lists",
    item_schema=item_schema,
    problems=problems,
    export=export,
    current=current,
    save=save,
    normalise=normalise,
)
