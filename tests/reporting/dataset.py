"""A known data set for the reports, and the figures computed from it in plain
Python: loops over the records the test wrote, never over what the database
aggregates, so a wrong GROUP BY cannot agree with itself."""

import datetime
import random
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.models import DeliveryEvent, Feedback
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    BuyerFactory,
    FlowFactory,
    LeadFactory,
    SourceFactory,
    seeded_outcome_codes,
)

UTC = datetime.UTC
START = datetime.date(2025, 3, 1)
END = datetime.date(2025, 3, 20)
RANGE_START = datetime.datetime(2025, 3, 1, tzinfo=UTC)
RANGE_END = datetime.datetime(2025, 3, 21, tzinfo=UTC)

REASONS = ["Wrong number", "Duplicate", '=HYPERLINK("x")', ""]
CODES = ["contacted", "no_contact", "bad_info", "converted", "duplicate", None]
DELAYS = [
    datetime.timedelta(minutes=10),
    datetime.timedelta(hours=5),
    datetime.timedelta(days=3),
    datetime.timedelta(days=10),
    datetime.timedelta(days=40),
    datetime.timedelta(hours=1),  # exactly on a bucket's edge: 1-24 h
]


@dataclass
class DeliveryRecord:
    obj: DeliveryEvent
    source_id: int
    flow_id: int
    buyer_id: int
    price: Decimal
    delivered_at: datetime.datetime
    feedback: list["FeedbackRecord"] = field(default_factory=list)


@dataclass
class FeedbackRecord:
    delivery: DeliveryRecord
    kind: str
    outcome: str
    reason: str
    revenue: Decimal | None
    quality: int | None
    code: str | None
    received_at: datetime.datetime

    @property
    def source_id(self) -> int:
        return self.delivery.source_id

    @property
    def flow_id(self) -> int:
        return self.delivery.flow_id

    @property
    def buyer_id(self) -> int:
        return self.delivery.buyer_id


@dataclass
class DataSet:
    deliveries: list[DeliveryRecord]
    feedback: list[FeedbackRecord]
    sources: list[Any]
    flows: list[Any]
    buyers: list[Any]


def build(*, groups: int = 2, per_group: int = 12, seed: int = 7) -> DataSet:
    """`groups` sources, flows and buyers; deliveries spread over February and
    March 2025 (February falls outside the range the tests ask for)."""
    rng = random.Random(seed)
    sources = [SourceFactory(slug=f"src-{n:02d}") for n in range(groups)]
    flows = [FlowFactory(slug=f"flow-{n:02d}") for n in range(groups)]
    buyers = [BuyerFactory(slug=f"buyer-{n:02d}") for n in range(groups)]
    codes = seeded_outcome_codes()
    deliveries: list[DeliveryRecord] = []
    all_feedback: list[FeedbackRecord] = []
    for index in range(groups * per_group):
        source = sources[index % groups]
        flow = flows[(index // 2) % groups]
        buyer = buyers[(index // 3) % groups]
        delivered_at = datetime.datetime(2025, 2, 20, tzinfo=UTC) + datetime.timedelta(
            hours=rng.randrange(0, 30 * 24)
        )
        price = Decimal(rng.choice(["10.00", "25.50", "40.00"]))
        lead = LeadFactory(source=source, flow=flow)
        delivery = DeliveryEvent.objects.create(
            event_id=f"{seed:04x}{index:020x}",
            lead=lead,
            buyer=buyer,
            source=source,
            flow=flow,
            price=price,
            delivered_at=delivered_at,
        )
        record = DeliveryRecord(
            delivery, source.pk, flow.pk, buyer.pk, price, delivered_at
        )
        deliveries.append(record)
        returned = False
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            kind = rng.choice([Kind.CONVERSION, Kind.RETURN, Kind.STATUS])
            outcome = rng.choice(
                [Feedback.Outcome.SUCCESS] * 3 + [Feedback.Outcome.FAILURE]
            )
            if kind == Kind.RETURN and outcome == Feedback.Outcome.SUCCESS:
                if returned:
                    outcome = Feedback.Outcome.FAILURE
                returned = True
            code = rng.choice(CODES)
            fb = FeedbackRecord(
                delivery=record,
                kind=kind,
                outcome=outcome,
                reason=rng.choice(REASONS),
                revenue=Decimal(rng.choice(["0", "120.00", "75.25"]))
                if kind == Kind.CONVERSION
                else None,
                quality=rng.choice([None, 1, 3, 5]),
                code=code,
                received_at=delivered_at + rng.choice(DELAYS),
            )
            Feedback.objects.create(
                delivery=delivery,
                lead=lead,
                buyer=buyer,
                source=source,
                flow=flow,
                kind=fb.kind,
                outcome=fb.outcome,
                reason=fb.reason,
                revenue=fb.revenue,
                quality_score=fb.quality,
                outcome_code=codes[code] if code else None,
                occurred_at=fb.received_at,
                received_at=fb.received_at,
                channel=Feedback.Channel.API,
            )
            record.feedback.append(fb)
            all_feedback.append(fb)
    return DataSet(deliveries, all_feedback, sources, flows, buyers)


def add_forwarding(sources) -> None:
    """One config per source with a succeeded and a retrying notification."""
    for source in sources:
        config = FeedbackConfig.objects.create(
            source=source, kind=Kind.CONVERSION, url="https://example.com/hook"
        )
        carriers = list(
            Feedback.objects.filter(
                source=source,
                delivery__delivered_at__gte=RANGE_START,
                delivery__delivered_at__lt=RANGE_END,
            ).order_by("pk")[:2]
        )
        for carrier, status in zip(carriers, ("succeeded", "retrying"), strict=False):
            notification = Notification.objects.create(
                feedback=carrier,
                config=config,
                source=source,
                kind=Kind.CONVERSION,
                lead_delivered_at=carrier.delivery.delivered_at,
                status=status,
                attempt_count=1,
                created_at=datetime.datetime(2025, 3, 5, tzinfo=UTC),
            )
            NotificationAttempt.objects.create(
                notification=notification,
                number=1,
                started_at=notification.created_at,
                duration_ms=100,
                request_method="POST",
                request_url=config.url,
                response_status=200 if status == "succeeded" else 503,
                outcome="success" if status == "succeeded" else "error",
            )


# Independent expectations --------------------------------------------------------


def in_range(moment: datetime.datetime) -> bool:
    return RANGE_START <= moment < RANGE_END


def counted(
    data: DataSet, basis: str
) -> tuple[list[DeliveryRecord], list[FeedbackRecord]]:
    deliveries = [d for d in data.deliveries if in_range(d.delivered_at)]
    if basis == "delivery":
        feedback = [f for d in deliveries for f in d.feedback]
    else:
        feedback = [f for f in data.feedback if in_range(f.received_at)]
    return deliveries, feedback


def _measures(
    deliveries: list[DeliveryRecord],
    feedback: list[FeedbackRecord],
    covered: int,
) -> dict[str, Any]:
    accepted = [f for f in feedback if f.outcome == "success"]
    conversions = sum(1 for f in accepted if f.kind == "conversion")
    returns = sum(1 for f in accepted if f.kind == "return")
    delivered = len(deliveries)
    cost = sum((d.price for d in deliveries), Decimal("0.00"))
    scores = [f.quality for f in accepted if f.quality is not None]
    contacted = sum(
        1 for f in accepted if f.code in ("contacted", "converted", "not_interested")
    )
    not_contacted = sum(1 for f in accepted if f.code in ("no_contact", "bad_info"))
    return {
        "delivered": delivered,
        "received": len(feedback),
        "accepted": len(accepted),
        "refused": sum(1 for f in feedback if f.outcome == "failure"),
        "conversions": conversions,
        "returns": returns,
        "status_updates": sum(1 for f in accepted if f.kind == "status"),
        "conversion_rate": conversions / delivered if delivered else None,
        "return_rate": returns / delivered if delivered else None,
        "revenue": sum((f.revenue or Decimal(0) for f in accepted), Decimal("0.00")),
        "cost": cost,
        "cost_per_conversion": (cost / conversions).quantize(Decimal("0.01"))
        if conversions
        else None,
        "avg_quality": statistics.fmean(scores) if scores else None,
        "coverage": covered / delivered if delivered else None,
        "contacted": contacted,
        "not_contacted": not_contacted,
        "contact_rate": contacted / (contacted + not_contacted)
        if contacted + not_contacted
        else None,
    }


def expected_breakdown(
    data: DataSet, dimension: str, basis: str, kind: str | None = None
) -> dict[Any, dict]:
    """Per group: what a breakdown shows, narrowed to feedback of `kind` if given
    (a reason's deliveries are then those with feedback of that reason and kind)."""
    deliveries, feedback = counted(data, basis)
    if kind is not None:
        feedback = [f for f in feedback if f.kind == kind]
    result: dict[Any, dict] = {}
    if dimension in ("source", "flow", "buyer"):
        attr = f"{dimension}_id"
        keys = {getattr(d, attr) for d in deliveries} | {
            getattr(f, attr) for f in feedback
        }
        counted_ids = {id(f) for f in feedback}
        for key in keys:
            group_deliveries = [d for d in deliveries if getattr(d, attr) == key]
            group_feedback = [f for f in feedback if getattr(f, attr) == key]
            covered = sum(
                1
                for d in group_deliveries
                if any(id(f) in counted_ids for f in d.feedback)
            )
            result[key] = _measures(group_deliveries, group_feedback, covered)
    else:
        attr = dimension
        for key in {getattr(f, attr) for f in feedback}:
            group_feedback = [f for f in feedback if getattr(f, attr) == key]
            unique: dict[int, DeliveryRecord] = {}
            for f in group_feedback:
                unique[id(f.delivery)] = f.delivery
            group_deliveries = list(unique.values())
            result[key] = _measures(
                group_deliveries, group_feedback, len(group_deliveries)
            )
    if dimension == "kind":
        # By kind, the rates are on every delivery delivered in the range.
        everyone = sum(1 for d in data.deliveries if in_range(d.delivered_at))
        for row in result.values():
            row["conversion_rate"] = row["conversions"] / everyone
            row["return_rate"] = row["returns"] / everyone
    return result


def expected_time_to_feedback(
    data: DataSet, dimension: str, basis: str
) -> dict[Any, dict]:
    _, feedback = counted(data, basis)
    result = {}
    attr = f"{dimension}_id"
    for key in {getattr(f, attr) for f in feedback}:
        seconds = [
            (f.received_at - f.delivery.delivered_at).total_seconds()
            for f in feedback
            if getattr(f, attr) == key
        ]
        if len(seconds) > 1:
            deciles = statistics.quantiles(seconds, n=10, method="inclusive")
            median, p90 = statistics.median(seconds), deciles[8]
        else:
            median = p90 = seconds[0]
        hours = [s / 3600 for s in seconds]
        result[key] = {
            "feedback": len(seconds),
            "median": median,
            "p90": p90,
            "under_1h": sum(1 for h in hours if h < 1),
            "1h_24h": sum(1 for h in hours if 1 <= h < 24),
            "1d_7d": sum(1 for h in hours if 24 <= h < 7 * 24),
            "7d_30d": sum(1 for h in hours if 7 * 24 <= h < 30 * 24),
            "over_30d": sum(1 for h in hours if h >= 30 * 24),
        }
    return result


# Forwarding ---------------------------------------------------------------------------


def add_notifications(data: DataSet) -> dict[str, Any]:
    """Two configs on the first source; notifications with known statuses and
    attempts. Returns the records behind them."""
    source = data.sources[0]
    json_config = FeedbackConfig.objects.create(
        source=source, kind=Kind.CONVERSION, url="https://example.com/hook"
    )
    form_config = FeedbackConfig.objects.create(
        source=source,
        kind=Kind.RETURN,
        method=FeedbackConfig.Method.FORM,
        url="https://example.com/form",
    )
    plans = [
        # (config, status, [(outcome, status code, duration ms)], created)
        (json_config, "succeeded", [("success", 200, 120)], "2025-03-02"),
        (
            json_config,
            "succeeded",
            [("error", 503, 900), ("error", None, 3000), ("success", 200, 80)],
            "2025-03-03",
        ),
        (json_config, "failed", [("failure", 400, 60)], "2025-03-04"),
        (json_config, "dead", [("error", 500, 200)] * 3, "2025-03-05"),
        (json_config, "retrying", [("error", 502, 150)], "2025-03-06"),
        (json_config, "pending", [], "2025-03-07"),
        (form_config, "succeeded", [("success", 201, 40)], "2025-03-08"),
        (form_config, "pending", [], "2025-04-02"),  # after the range, still queued
        (form_config, "succeeded", [("success", 200, 55)], "2025-04-03"),
    ]
    # Notifications need feedback; any will do, they are counted per config.
    carriers = list(Feedback.objects.filter(source=source).order_by("pk"))
    made = []
    for index, (config, status, attempts, created) in enumerate(plans):
        created_at = datetime.datetime.fromisoformat(created).replace(
            hour=9, tzinfo=UTC
        )
        notification = Notification.objects.create(
            feedback=carriers[index],
            config=config,
            source=source,
            kind=config.kind,
            lead_delivered_at=carriers[index].delivery.delivered_at,
            status=status,
            attempt_count=len(attempts),
            created_at=created_at,
        )
        for number, (outcome, code, duration) in enumerate(attempts, 1):
            NotificationAttempt.objects.create(
                notification=notification,
                number=number,
                started_at=created_at + datetime.timedelta(minutes=number),
                duration_ms=duration,
                request_method="POST",
                request_url=config.url,
                response_status=code,
                outcome=outcome,
            )
        made.append((config, status, attempts, created_at, notification))
    return {"configs": (json_config, form_config), "plans": made}
