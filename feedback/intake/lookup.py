"""Intake, step two: what judging and storing need from the database.

Three ways to read the same facts (the buyer's deliveries the items name, its
policies, earlier returns, the sources' enabled configs), each for the size it
serves: `known_one` for one item in one statement, `known_many` for API
batches through the ORM, `known_rows` for file chunks of thousands of rows as
plain rows. Whichever is used, judging reads the same attributes.
"""

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model

from feedback.forwarding.notifications import Configs
from feedback.intake.parse import FieldError, Parsed, lookup_key
from feedback.models import Buyer, BuyerPolicy, DeliveryEvent, Feedback, Flow, Lead
from feedback.rows import Columns
from feedback.suppression.services import suppression_wanted
from sources.models import FeedbackConfig, Kind, Source

# From this many items an intake takes its bulk paths: the sources and flows of
# the deliveries are read once rather than joined to every row, and feedback is
# written with COPY (one statement to reserve the ids, one to stream the rows).
# Below, joins and one INSERT make fewer round trips.
BULK_MIN_ITEMS = 20


@dataclass
class Known:
    """What judging and storing items needs from the database."""

    deliveries: dict[tuple[str, str], DeliveryEvent | None]
    policies: dict[tuple[int | None, str], BuyerPolicy]
    # Deliveries of returns that were returned before; for one item the INSERT
    # finds out instead (`known_one`).
    returned: set[int]
    # The enabled configs by (source, kind), when read with the deliveries;
    # otherwise notifications_create reads them.
    configs: Configs | None = None


# The parts of `known_one`'s rows, in order; a config's columns come last.
_ONE_CONFIG = Columns(FeedbackConfig, "c")


_ONE_PARTS = (
    Columns(DeliveryEvent, "d"),
    Columns(Lead, "l"),
    Columns(Source, "s"),
    Columns(Flow, "f"),
    Columns(BuyerPolicy, "pf"),  # the flow's policy for the kind
    Columns(BuyerPolicy, "pb"),  # the buyer-wide one
    _ONE_CONFIG,
)


@cache
def _known_one_sql() -> str:
    d, lead, source, flow, flow_policy, buyer_policy, config = _ONE_PARTS
    return (
        f"SELECT {', '.join(part.sql for part in _ONE_PARTS)} "  # noqa: S608 - names from _meta
        f"FROM {d.table} "
        f"JOIN {lead.table} ON l.id = d.lead_id "
        f"JOIN {source.table} ON s.id = d.source_id "
        f"JOIN {flow.table} ON f.id = d.flow_id "
        f"LEFT JOIN {flow_policy.table} "
        "ON pf.buyer_id = d.buyer_id AND pf.flow_id = d.flow_id AND pf.kind = %s "
        f"LEFT JOIN {buyer_policy.table} "
        "ON pb.buyer_id = d.buyer_id AND pb.flow_id IS NULL AND pb.kind = %s "
        f"LEFT JOIN {config.table} "
        "ON c.source_id = d.source_id AND c.kind = %s AND c.enabled "
        "WHERE d.buyer_id = %s AND d.event_id = %s "
        "ORDER BY c.id"
    )


def known_one(buyer: Buyer, parsed: list[Parsed]) -> Known | None:
    """For one item quoting an event id: everything in one statement.

    The delivery with its lead, source and flow; the two policies that can apply
    to its kind; and the source's enabled configs for the kind, one row each
    (the delivery repeats on every row). It is the hot path of the intake: the
    reads of `known_many` in one round trip, without compiling querysets
    (feedback/rows.py).

    Whether the delivery was returned before is not read: for one item the
    INSERT asks the database's constraint, which has the last word anyway
    (`_store_one`). Reading it here would put the feedback table, the one that
    grows fastest, into a statement whose plan PostgreSQL keeps.
    """
    if len(parsed) != 1 or parsed[0].fatal or not parsed[0].event_id:
        return None
    item = parsed[0]
    params: list[str | int] = [item.kind, item.kind, item.kind, buyer.pk, item.event_id]
    with connection.cursor() as cursor:
        cursor.execute(_known_one_sql(), params)
        rows = cursor.fetchall()
    known = Known({}, {}, set(), {})
    if not rows:
        return known
    first, start = rows[0], 0
    loaded: list[Any] = []
    for part in _ONE_PARTS[:-1]:
        loaded.append(part.load(first, start))
        start += len(part)
    delivery, lead, source, flow, flow_policy, buyer_policy = loaded
    delivery.buyer, delivery.lead, delivery.source, delivery.flow = (
        buyer,
        lead,
        source,
        flow,
    )
    known.deliveries[("event_id", item.event_id)] = delivery
    for policy in (flow_policy, buyer_policy):
        if policy is not None:
            known.policies[(policy.flow_id, policy.kind)] = policy
    configs = [_ONE_CONFIG.load(row, start) for row in rows]
    known.configs = {(source.pk, item.kind): [c for c in configs if c is not None]}
    return known


def known_many(buyer: Buyer, parsed: list[Parsed]) -> Known:
    deliveries = _deliveries_for(buyer=buyer, parsed=parsed)
    # Only a return cares whether the delivery was returned before.
    return_keys = {lookup_key(p) for p in parsed if p.kind == Kind.RETURN}
    returned = _returned_delivery_ids(
        [d for k, d in deliveries.items() if d is not None and k in return_keys]
    )
    return Known(deliveries, policies_for(buyer=buyer), returned)


def _returned_delivery_ids(deliveries: list[DeliveryEvent]) -> set[int]:
    if not deliveries:
        return set()
    return set(
        Feedback.objects.filter(
            delivery__in=deliveries,
            kind=Kind.RETURN,
            outcome=Feedback.Outcome.SUCCESS,
            # A retracted return frees the slot (DESIGN §12).
            retracted_at__isnull=True,
        ).values_list("delivery_id", flat=True)
    )


def _deliveries_for(
    *, buyer: Buyer, parsed: list[Parsed]
) -> dict[tuple[str, str], DeliveryEvent | None]:
    event_ids = {p.event_id for p in parsed if p.event_id and not p.fatal}
    references = {p.reference for p in parsed if not p.event_id and not p.fatal}
    found: dict[tuple[str, str], DeliveryEvent | None] = {}
    bulk = len(event_ids) + len(references) >= BULK_MIN_ITEMS
    scoped = DeliveryEvent.objects.filter(buyer=buyer).select_related(
        *(["lead"] if bulk else ["source", "lead", "flow"])
    )
    read: list[DeliveryEvent] = []
    if event_ids:
        for delivery in scoped.filter(event_id__in=event_ids):
            read.append(delivery)
            found[("event_id", delivery.event_id)] = delivery
    by_reference: dict[str, list[DeliveryEvent]] = {}
    if references:
        for delivery in scoped.filter(reference__in=references):
            read.append(delivery)
            by_reference.setdefault(delivery.reference, []).append(delivery)
    sources = Source.objects.in_bulk({d.source_id for d in read}) if bulk else {}
    flows = Flow.objects.in_bulk({d.flow_id for d in read}) if bulk else {}
    for delivery in read:
        # The buyer is the caller's, and in a batch a few sources and flows are
        # shared by every row: one instance each rather than a copy per row.
        delivery.buyer = buyer
        if bulk:
            delivery.source = sources[delivery.source_id]
            delivery.flow = flows[delivery.flow_id]
    if references:
        for reference, matches in by_reference.items():
            if len(matches) == 1:
                found[("reference", reference)] = matches[0]
        _refuse_ambiguous(parsed, by_reference)
    return found


def policies_for(*, buyer: Buyer) -> dict[tuple[int | None, str], BuyerPolicy]:
    return {
        (policy.flow_id, policy.kind): policy
        for policy in BuyerPolicy.objects.filter(buyer=buyer)
    }


@dataclass(eq=False, slots=True)
class LeadRow:
    """The lead fields `feedback_variables` reads."""

    pk: int
    public_id: str
    data: dict[str, Any]


@dataclass(eq=False, slots=True)
class DeliveryRow:
    """A delivery as `judge` and `feedback_variables` read it, without a model
    instance: at thousands of rows per second a model's __init__ costs more
    than every check of the row together."""

    pk: int
    event_id: str
    reference: str
    lead_id: int
    source: Source
    flow: Flow
    price: Decimal
    delivered_at: datetime
    lead: LeadRow | None
    source_id: int
    flow_id: int


def _deliveries_as_rows(
    *,
    buyer: Buyer,
    parsed: list[Parsed],
    policies: dict[tuple[int | None, str], Any],
) -> dict[tuple[str, str], DeliveryRow]:
    """The buyer's deliveries the items name, found as `_deliveries_for` finds
    them (an ambiguous reference is an error on the item), read as plain rows."""
    event_ids = {p.event_id for p in parsed if p.event_id and not p.fatal}
    references = {p.reference for p in parsed if not p.event_id and not p.fatal}
    columns = (
        "id",
        "event_id",
        "reference",
        "lead_id",
        "source_id",
        "flow_id",
        "price",
        "delivered_at",
    )
    scope = {"buyer_id": buyer.pk}
    rows: list[tuple[Any, ...]] = []
    if event_ids:
        rows += _select_any(DeliveryEvent, columns, scope, "event_id", event_ids)
    by_reference: dict[str, list[tuple[Any, ...]]] = {}
    if references:
        for row in _select_any(DeliveryEvent, columns, scope, "reference", references):
            by_reference.setdefault(row[2], []).append(row)
        _refuse_ambiguous(parsed, by_reference)
    unique_references = [m[0] for m in by_reference.values() if len(m) == 1]
    all_rows = rows + unique_references
    sources = Source.objects.in_bulk({row[4] for row in all_rows})
    flows = Flow.objects.in_bulk({row[5] for row in all_rows})
    # Rule sets, forwarding criteria and suppression lists read the lead's
    # fields; otherwise the lead id is all a feedback row needs.
    needs_leads = (
        any(policy.rules or policy.auto_approve for policy in policies.values())
        or suppression_wanted(parsed)
        or FeedbackConfig.objects.filter(
            enabled=True, source_id__in=list(sources)
        ).exists()
    )
    leads: dict[int, LeadRow] = {}
    if needs_leads:
        lead_rows = _select_any(
            Lead, ("id", "public_id", "data"), {}, "id", {row[3] for row in all_rows}
        )
        leads = {
            pk: LeadRow(
                pk, public_id, json.loads(data) if isinstance(data, str) else data
            )
            for pk, public_id, data in lead_rows
        }

    def build(row: tuple[Any, ...]) -> DeliveryRow:
        pk, event_id, reference, lead_id, source_id, flow_id, price, delivered = row
        return DeliveryRow(
            pk=pk,
            event_id=event_id,
            reference=reference,
            lead_id=lead_id,
            source=sources[source_id],
            flow=flows[flow_id],
            price=price,
            delivered_at=delivered,
            lead=leads.get(lead_id),
            source_id=source_id,
            flow_id=flow_id,
        )

    found = {("event_id", row[1]): build(row) for row in rows}
    for row in unique_references:
        found[("reference", row[2])] = build(row)
    return found


def _select_any(
    model: type[Model],
    columns: Sequence[str],
    where: dict[str, Any],
    field: str,
    values: Collection[Any],
) -> list[tuple[Any, ...]]:
    """Rows (`columns`) of `model` whose `field` is one of `values`, with the
    equalities of `where`. On PostgreSQL one array parameter (= ANY) replaces an
    IN list of thousands of placeholders, which took longer to build and send
    than the query takes to run. JSON columns come back as text there."""
    if connection.vendor != "postgresql":
        queryset = model._default_manager.filter(**where, **{f"{field}__in": values})
        return list(queryset.values_list(*columns))
    meta = model._meta
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(str(cast(Field[Any, Any], meta.get_field(name)).column))

    conditions = [f"{column(name)} = %s" for name in where]
    conditions.append(f"{column(field)} = ANY(%s)")
    sql = (
        f"SELECT {', '.join(column(c) for c in columns)} "  # noqa: S608 - names from _meta
        f"FROM {quote(meta.db_table)} WHERE {' AND '.join(conditions)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*where.values(), list(values)])
        return list(cursor.fetchall())


def known_rows(buyer: Buyer, parsed: list[Parsed]) -> Known:
    """For file chunks: the deliveries as plain rows (leads only when a rule
    set or a forwarding config will read them), found as `known_many` finds
    them, with the earlier returns among them."""
    policies = policies_for(buyer=buyer)
    deliveries = _deliveries_as_rows(buyer=buyer, parsed=parsed, policies=policies)
    for kind in Kind.values:
        # `policy_for` falls back to a new default policy for every row of a kind
        # the buyer has no policy for; one shared default reads the same.
        policies.setdefault((None, kind), BuyerPolicy(kind=kind, enabled=True))
    return_keys = {lookup_key(p) for p in parsed if p.kind == Kind.RETURN}
    returned_ids = [d.pk for k, d in deliveries.items() if k in return_keys]
    returned: set[int] = set()
    if returned_ids:
        returned = set(
            Feedback.objects.filter(
                delivery_id__in=returned_ids,
                kind=Kind.RETURN,
                outcome=Feedback.Outcome.SUCCESS,
                retracted_at__isnull=True,
            ).values_list("delivery_id", flat=True)
        )
    return Known(cast(dict[tuple[str, str], Any], deliveries), policies, returned)


def _refuse_ambiguous(parsed: list[Parsed], by_reference: dict[str, list[Any]]) -> None:
    """An item naming a reference that several deliveries share cannot be
    stored: it must name its event id."""
    for item in parsed:
        matches = by_reference.get(item.reference, [])
        if not item.event_id and len(matches) > 1:
            item.fatal.append(
                FieldError(
                    "reference",
                    f"{len(matches)} deliveries have this reference: "
                    "send the event_id instead.",
                )
            )
