"""Buyers and their return, conversion and status policies as configuration
documents (DESIGN §9): schema, checks, export, import and saving.

The buyers half of configuration as code; document.py puts it together with
the sources half (sources/configuration/) into one document.
"""

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


def policy_schema(kind: str) -> Document:
    properties: Document = {"enabled": {"type": "boolean"}, "rules": RULES_SCHEMA}
    if kind == Kind.RETURN:
        properties["max_age_days"] = {"type": "integer", "minimum": 1, "maximum": 3650}
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
                        "max_age_days": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 3650,
                        },
                        "rules": RULES_SCHEMA,
                    },
                    required=["flow", "kind", "enabled"],
                ),
            },
        },
        required=["slug", "name"],
    )


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
    first_seen: dict[tuple[str, str], int] = {}
    for index, entry in dict_items(buyer.get("flow_policies")):
        entry_path: JsonPath = (*path, "flow_policies", index)
        flow, flow_kind = entry.get("flow"), entry.get("kind")
        problems += slug_problem(flow, (*entry_path, "flow"))
        if "max_age_days" in entry and flow_kind in KINDS and flow_kind != Kind.RETURN:
            problems.append(
                Problem((*entry_path, "max_age_days"), "only applies to returns")
            )
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


def _policy_entry(
    kind: str, *, enabled: bool, max_age_days: int, rules: Any
) -> Document:
    entry: Document = {"enabled": enabled}
    if kind == Kind.RETURN:
        entry["max_age_days"] = max_age_days
    entry["rules"] = sorted_json(rules)
    return entry


def _flow_policy_entry(
    *, flow: str, kind: str, enabled: bool, max_age_days: int, rules: Any
) -> Document:
    entry = _policy_entry(kind, enabled=enabled, max_age_days=max_age_days, rules=rules)
    return {"flow": flow, "kind": kind, **entry}


def _flow_policy_order(entry: Document) -> tuple[str, int]:
    return entry["flow"], KINDS.index(entry["kind"])


def buyers_with_policies() -> QuerySet[Buyer]:
    return Buyer.objects.prefetch_related(
        Prefetch("policies", queryset=BuyerPolicy.objects.select_related("flow"))
    )


def buyer_document(buyer: Buyer) -> Document:
    policies = list(buyer.policies.all())
    policy = {
        row.kind: _policy_entry(
            row.kind,
            enabled=row.enabled,
            max_age_days=row.max_age_days,
            rules=row.rules,
        )
        for row in policies
        if row.flow is None
    }
    flow_policies = [
        _flow_policy_entry(
            flow=row.flow.slug,
            kind=row.kind,
            enabled=row.enabled,
            max_age_days=row.max_age_days,
            rules=row.rules,
        )
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
            flow=entry["flow"],
            kind=entry["kind"],
            enabled=entry["enabled"],
            max_age_days=int(
                entry.get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS)
            ),
            rules=entry.get("rules"),
        )
        for entry in item.get("flow_policies") or []
    ]
    return {
        "slug": item["slug"],
        "name": item["name"],
        "is_active": item.get("is_active", True),
        "policy": {
            kind: _policy_entry(
                kind,
                enabled=policy[kind]["enabled"],
                max_age_days=int(
                    policy[kind].get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS)
                ),
                rules=policy[kind].get("rules"),
            )
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
        values = {
            "enabled": entry["enabled"],
            "max_age_days": entry.get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS),
            "rules": entry["rules"],
        }
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
