"""Buyers and their return, conversion and status policies as configuration
documents (DESIGN §9): schema, checks, export, import and saving.

The buyers half of configuration as code; document.py puts it together with
the sources half (sources/configuration/) into one document.
"""

from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet

from feedback.models import Buyer, BuyerPolicy, Flow
from sources.configuration.base import (
    KINDS,
    NAME_SCHEMA,
    RULES_SCHEMA,
    SLUG_SCHEMA,
    Document,
    JsonPath,
    Problem,
    dict_items,
    json_path,
    object_schema,
    rule_set_problems,
    slug_problem,
    sorted_json,
)
from sources.models import Kind

# Returns resolution (DESIGN §10): the return policy's review, cap and credit.
REVIEW_SCHEMA: Document = {
    "type": "object",
    "properties": {
        "review": {"enum": list(BuyerPolicy.Review.values)},
        "auto_approve": RULES_SCHEMA,
        "cap": {
            "type": ["object", "null"],
            "properties": {
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
                "min": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
            },
            "required": ["percent"],
            "additionalProperties": False,
        },
        "credit_percent": {"type": "number", "minimum": 0, "maximum": 100},
        "dispute_days": {"type": "integer", "minimum": 0, "maximum": 365},
    },
}
RETURN_ONLY = ("max_age_days", *REVIEW_SCHEMA["properties"])


def _return_properties() -> Document:
    return {
        "max_age_days": {"type": "integer", "minimum": 1, "maximum": 3650},
        **REVIEW_SCHEMA["properties"],
    }


def policy_schema(kind: str) -> Document:
    properties: Document = {
        "enabled": {"type": "boolean"},
        "rules": RULES_SCHEMA,
        # Corrections (DESIGN §12): every kind.
        "retract_hours": {"type": "integer", "minimum": 0, "maximum": 8760},
    }
    if kind == Kind.RETURN:
        properties.update(_return_properties())
    return object_schema(properties, required=["enabled"])


def buyer_schema() -> Document:
    return object_schema(
        {
            "slug": SLUG_SCHEMA,
            "name": NAME_SCHEMA,
            "is_active": {"type": "boolean"},
            "policy": object_schema({kind: policy_schema(kind) for kind in KINDS}),
            "flow_policies": {
                "type": "array",
                "items": object_schema(
                    {
                        "flow": SLUG_SCHEMA,
                        "kind": {"enum": list(KINDS)},
                        "enabled": {"type": "boolean"},
                        # Returns only; checked in buyer_problems.
                        **_return_properties(),
                        "rules": RULES_SCHEMA,
                    },
                    required=["flow", "kind", "enabled"],
                ),
            },
        },
        required=["slug", "name"],
    )


def _review_problems(entry: dict[str, Any], path: JsonPath) -> list[Problem]:
    """The return review fields' checks beyond the schema."""
    problems = rule_set_problems(entry.get("auto_approve"), (*path, "auto_approve"))
    if entry.get("review") == BuyerPolicy.Review.RULES and not entry.get(
        "auto_approve"
    ):
        problems.append(
            Problem(
                (*path, "auto_approve"),
                'review "rules" needs auto_approve rules (without them every '
                'return waits: use review "manual")',
            )
        )
    cap = entry.get("cap")
    numbers = [("credit_percent", entry.get("credit_percent"))]
    if isinstance(cap, dict):
        numbers.append(("cap.percent", cap.get("percent")))
    for name, value in numbers:
        if isinstance(value, float) and round(value, 2) != value:
            problems.append(Problem((*path, *name.split(".")), "at most two decimals"))
    return problems


def buyer_problems(buyer: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    policy = buyer.get("policy")
    if isinstance(policy, dict):
        for kind in KINDS:
            entry = policy.get(kind)
            if isinstance(entry, dict):
                problems += rule_set_problems(
                    entry.get("rules"), (*path, "policy", kind, "rules")
                )
                if kind == Kind.RETURN:
                    problems += _review_problems(entry, (*path, "policy", kind))
    first_seen: dict[tuple[str, str], int] = {}
    for index, entry in dict_items(buyer.get("flow_policies")):
        entry_path: JsonPath = (*path, "flow_policies", index)
        flow, flow_kind = entry.get("flow"), entry.get("kind")
        problems += slug_problem(flow, (*entry_path, "flow"))
        if flow_kind in KINDS and flow_kind != Kind.RETURN:
            problems += [
                Problem((*entry_path, name), "only applies to returns")
                for name in RETURN_ONLY
                if name in entry
            ]
        elif flow_kind == Kind.RETURN:
            problems += _review_problems(entry, entry_path)
        if isinstance(flow, str) and isinstance(flow_kind, str):
            pair = (flow, flow_kind)
            if pair in first_seen:
                earlier = json_path((*path, "flow_policies", first_seen[pair]))
                problems.append(
                    Problem(
                        entry_path,
                        f"a second {flow_kind} policy for flow {flow!r} "
                        f"(first at {earlier})",
                    )
                )
            else:
                first_seen[pair] = index
        problems += rule_set_problems(entry.get("rules"), (*entry_path, "rules"))
    return problems


def _number(value: Any) -> int | float:
    """A percentage as the document writes it: 10, or 7.5."""
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() else float(number)


def _policy_entry(kind: str, fields: Document) -> Document:
    """A policy's document entry from its field values (a row's or an input's)."""
    entry: Document = {"enabled": fields["enabled"]}
    if kind == Kind.RETURN:
        cap_percent = fields.get("cap_percent")
        entry["max_age_days"] = int(
            fields.get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS)
        )
        entry["review"] = fields.get("review") or BuyerPolicy.Review.AUTO
        entry["auto_approve"] = sorted_json(fields.get("auto_approve"))
        entry["cap"] = (
            None
            if cap_percent is None
            else {"percent": _number(cap_percent), "min": int(fields.get("cap_min", 0))}
        )
        entry["credit_percent"] = _number(fields.get("credit_percent", 100))
        entry["dispute_days"] = int(fields.get("dispute_days", DEFAULT_DISPUTE_DAYS))
    entry["rules"] = sorted_json(fields.get("rules"))
    retract_hours = fields.get("retract_hours", BuyerPolicy.DEFAULT_RETRACT_HOURS)
    if retract_hours != BuyerPolicy.DEFAULT_RETRACT_HOURS:
        # Written only when changed, so documents from before it read the same.
        entry["retract_hours"] = int(retract_hours)
    return entry


DEFAULT_DISPUTE_DAYS = 7


def _row_fields(row: BuyerPolicy) -> Document:
    return {name: getattr(row, name) for name in POLICY_FIELDS}


def _input_fields(entry: Document) -> Document:
    """An input entry's values under the row's field names."""
    fields = {k: v for k, v in entry.items() if k in POLICY_FIELDS}
    cap = entry.get("cap")
    if isinstance(cap, dict):
        fields["cap_percent"] = cap.get("percent")
        fields["cap_min"] = cap.get("min", 0)
    return fields


POLICY_FIELDS = (
    "enabled",
    "max_age_days",
    "rules",
    "review",
    "auto_approve",
    "cap_percent",
    "cap_min",
    "credit_percent",
    "dispute_days",
    "retract_hours",
)


def _flow_policy_entry(*, flow: str, kind: str, fields: Document) -> Document:
    return {"flow": flow, "kind": kind, **_policy_entry(kind, fields)}


def _flow_policy_order(entry: Document) -> tuple[str, int]:
    return entry["flow"], KINDS.index(entry["kind"])


def buyers_with_policies() -> QuerySet[Buyer]:
    return Buyer.objects.prefetch_related(
        Prefetch("policies", queryset=BuyerPolicy.objects.select_related("flow"))
    )


def buyer_document(buyer: Buyer) -> Document:
    policies = list(buyer.policies.all())
    policy = {
        row.kind: _policy_entry(row.kind, _row_fields(row))
        for row in policies
        if row.flow is None
    }
    flow_policies = [
        _flow_policy_entry(flow=row.flow.slug, kind=row.kind, fields=_row_fields(row))
        for row in policies
        if row.flow is not None
    ]
    return {
        "slug": buyer.slug,
        "name": buyer.name,
        "is_active": buyer.is_active,
        "policy": {kind: policy[kind] for kind in KINDS if kind in policy},
        "flow_policies": sorted(flow_policies, key=_flow_policy_order),
    }


def buyer_from_input(item: Document) -> Document:
    policy = item.get("policy") or {}
    flow_policies = [
        _flow_policy_entry(
            flow=entry["flow"], kind=entry["kind"], fields=_input_fields(entry)
        )
        for entry in item.get("flow_policies") or []
    ]
    return {
        "slug": item["slug"],
        "name": item["name"],
        "is_active": item.get("is_active", True),
        "policy": {
            kind: _policy_entry(kind, _input_fields(policy[kind]))
            for kind in KINDS
            if kind in policy
        },
        "flow_policies": sorted(flow_policies, key=_flow_policy_order),
    }


def buyer_save(
    desired: Document, buyer: Buyer | None, *, flows: dict[str, Flow]
) -> None:
    existing: dict[tuple[str | None, str], BuyerPolicy] = {}
    if buyer is None:
        buyer = Buyer.objects.create(
            slug=desired["slug"], name=desired["name"], is_active=desired["is_active"]
        )
    else:
        if (buyer.name, buyer.is_active) != (desired["name"], desired["is_active"]):
            buyer.name = desired["name"]
            buyer.is_active = desired["is_active"]
            buyer.save(update_fields=["name", "is_active", "updated_at"])
        existing = {
            (row.flow.slug if row.flow else None, row.kind): row
            for row in buyer.policies.all()
        }

    # The document is the whole truth about a buyer's policy rows: rows it does
    # not mention are removed, the rest updated in place or created.
    wanted: dict[tuple[str | None, str], Document] = {}
    for kind, entry in desired["policy"].items():
        wanted[None, kind] = entry
    for entry in desired["flow_policies"]:
        wanted[entry["flow"], entry["kind"]] = entry
    stale = [row.pk for key, row in existing.items() if key not in wanted]
    if stale:
        BuyerPolicy.objects.filter(pk__in=stale).delete()
    for (flow_slug, kind), entry in wanted.items():
        values = _row_values(entry)
        row = existing.get((flow_slug, kind))
        if row is None:
            BuyerPolicy.objects.create(
                buyer=buyer,
                flow=flows[flow_slug] if flow_slug else None,
                kind=kind,
                **values,
            )
        elif any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            row.save(update_fields=list(values))


def _row_values(entry: Document) -> Document:
    """A normalised document entry as the policy row's field values."""
    values: Document = {
        "enabled": entry["enabled"],
        "rules": entry["rules"],
        "retract_hours": entry.get("retract_hours", BuyerPolicy.DEFAULT_RETRACT_HOURS),
    }
    if "review" in entry:  # a return policy
        cap = entry["cap"]
        values.update(
            max_age_days=entry["max_age_days"],
            review=entry["review"],
            auto_approve=entry["auto_approve"],
            cap_percent=None if cap is None else Decimal(str(cap["percent"])),
            cap_min=0 if cap is None else cap["min"],
            credit_percent=Decimal(str(entry["credit_percent"])),
            dispute_days=entry["dispute_days"],
        )
    return values
