"""The `webhooks` section of the configuration document (DESIGN §9, §11).

```json
{"webhooks": [{"slug": "erp", "url": "https://seller.example/hooks/leadback",
               "secret": "<redacted>", "events": ["source.paused", "return.decided"],
               "enabled": true, "timeout_s": 10, "description": "ERP"}]}
```
"""

from collections.abc import Sequence

from feedback.configuration.sections import Section, section_register
from feedback.webhooks.models import EVENT_TYPES, WebhookEndpoint
from feedback.webhooks.services import webhook_endpoint_problems, webhook_endpoint_save
from sources.configuration.base import (
    REDACTED,
    Document,
    JsonPath,
    Problem,
    object_schema,
)

STORED_SECRET_STANDIN = "whsec_AA=="  # noqa: S105 - a well-formed placeholder
DEFAULTS: Document = {"enabled": True, "timeout_s": 10.0, "description": ""}


def item_schema() -> Document:
    return object_schema(
        {
            "slug": {"type": "string", "minLength": 1, "maxLength": 100},
            "url": {"type": "string", "minLength": 1, "maxLength": 2000},
            "secret": {"type": "string", "minLength": 1, "maxLength": 200},
            "events": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": list(EVENT_TYPES)},
            },
            "enabled": {"type": "boolean"},
            "timeout_s": {"type": "number", "minimum": 0.5, "maximum": 60},
            "description": {"type": "string", "maxLength": 500},
        },
        required=["slug", "url", "secret", "events"],
    )


def problems(item: Document, path: JsonPath, document: Document) -> list[Problem]:
    """The URL's scheme and the secret's form; the schema checked the rest."""
    url, secret = item.get("url"), item.get("secret")
    if not isinstance(url, str) or not isinstance(secret, str):
        return []
    # A redacted secret keeps the stored one, checked when it was stored.
    found = webhook_endpoint_problems(
        url=url,
        secret=STORED_SECRET_STANDIN if secret == REDACTED else secret,
        events=list(EVENT_TYPES),
    )
    return [
        Problem((*path, field), message) for field, message in sorted(found.items())
    ]


def endpoint_document(endpoint: WebhookEndpoint) -> Document:
    return {
        "slug": endpoint.slug,
        "url": endpoint.url,
        "secret": endpoint.secret,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "timeout_s": endpoint.timeout_s,
        "description": endpoint.description,
    }


def export() -> list[Document]:
    return [endpoint_document(e) for e in WebhookEndpoint.objects.order_by("slug")]


def current(slugs: Sequence[str], lock: bool) -> dict[str, Document]:
    endpoints = WebhookEndpoint.objects.filter(slug__in=list(slugs))
    if lock:
        endpoints = endpoints.select_for_update()
    return {e.slug: endpoint_document(e) for e in endpoints}


def save(item: Document) -> None:
    webhook_endpoint_save(
        slug=item["slug"],
        url=item["url"],
        secret=item["secret"],
        events=list(item["events"]),
        enabled=bool(item["enabled"]),
        description=item["description"],
        timeout_s=float(item["timeout_s"]),
    )


def normalise(item: Document) -> Document:
    filled = {**DEFAULTS, **item}
    filled["timeout_s"] = float(filled["timeout_s"])
    return filled


WEBHOOKS = Section(
    key="webhooks",
    entity="webhook",
    label="Webhooks",
    item_schema=item_schema,
    problems=problems,
    export=export,
    current=current,
    save=save,
    normalise=normalise,
    secret_paths=(("secret",),),
)


def register() -> None:
    section_register(WEBHOOKS)
