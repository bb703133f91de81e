"""Returns resolution (DESIGN §10): the credits approvals granted, how many
returns are approved, and how long a decision takes.

Every figure counts events by their own date (a credit by when it was granted,
a decision by its review step), so the date basis does not apply. Each query
starts from an index on that date: `Credit.created_at`, the partial index on
decision steps (feedback migration 0015) and the review queue's partial index
on waiting returns. docs/reports.md defines every figure."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from django.db.models import (
    Count,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone
from django.utils.safestring import SafeString

from feedback.models import Buyer, Feedback
from feedback.returns.models import Credit, ReturnTransition
from reporting.charts import bar_chart
from reporting.models import VIEW_BILLING
from reporting.reports.base import (
    CHART_BARS,
    Column,
    EpochSeconds,
    PercentileCont,
    Report,
    ReportTable,
    Section,
    as_dicts,
    is_postgresql,
    labels_for,
    percentile,
    rate,
    source_badges,
)
from sources.models import Kind, Source

State = Feedback.ReviewState
DECISIONS = (State.APPROVED, State.REJECTED)
WAITING = (State.PENDING, State.DISPUTED)
ZERO = Decimal("0.00")

CREDITS, APPROVAL, TIMING = "Credits", "Approval rate", "Time to decision"


def _no_reason(keys: Iterable[Any]) -> dict[Any, str]:
    return {key: key or "(no reason)" for key in keys}


class ReturnsResolutionReport(Report):
    """Credits, approval rates and time to decision of reviewed returns."""

    code = "returns-resolution"
    name = "Returns resolution"
    description = (
        "Credits granted by source, reason and buyer; approval rates; how long "
        "returns wait for a decision."
    )
    uses_basis = False
    sections: ClassVar[tuple[Section, ...]] = (
        Section(
            "credits-by-source",
            "Credits by source",
            "Credits granted in the range that are not voided, per source of the "
            "returned lead.",
            (VIEW_BILLING,),
            group=CREDITS,
        ),
        Section(
            "credits-by-reason",
            "Credits by reason",
            "The same credits per return reason.",
            (VIEW_BILLING,),
            group=CREDITS,
        ),
        Section(
            "credits-by-buyer",
            "Credits by buyer",
            "The same credits per buyer credited.",
            (VIEW_BILLING,),
            group=CREDITS,
        ),
        Section(
            "approval-by-buyer",
            "Approval rate by buyer",
            "Returns by their latest approval or rejection in the range, and "
            "returns received in the range still pending. A disputed rejection "
            "waits again.",
            group=APPROVAL,
        ),
        Section(
            "approval-by-reason",
            "Approval rate by reason",
            "The same returns per return reason.",
            group=APPROVAL,
        ),
        Section(
            "time-to-decision",
            "Time to decision by buyer",
            "From each return's arrival to its first approval or rejection, for "
            "first decisions made in the range; what waits now, whatever the dates.",
            group=TIMING,
        ),
    )

    def describe_dates(self) -> str:
        f = self.filters
        return (
            f"Counted by the date of each event ({f.start.isoformat()} to "
            f"{f.end.isoformat()}): credits by when they were granted, decisions "
            "by when they were made, pending returns by when they were received. "
            "Waiting now and the oldest waiting are as of now, whatever the dates. "
            "The date basis does not apply."
        )

    def generate_sections(self, sections: Sequence[Section]) -> list[ReportTable]:
        wanted = {section.key for section in sections}
        found: dict[str, tuple[str, dict[Any, dict[str, Any]], dict[str, Any]]] = {}
        for key, field in (
            ("credits-by-source", "source_id"),
            ("credits-by-reason", "reason"),
            ("credits-by-buyer", "buyer_id"),
        ):
            if key in wanted:
                rows = self._credits(field)
                found[key] = (field, rows, _credit_totals(rows.values()))
        if wanted & {"approval-by-buyer", "approval-by-reason"}:
            by_buyer, by_reason = self._approvals()
            found["approval-by-buyer"] = ("buyer_id", by_buyer, {})
            found["approval-by-reason"] = ("reason", by_reason, {})
        if "time-to-decision" in wanted:
            rows, totals = self._time_to_decision()
            found["time-to-decision"] = ("buyer_id", rows, totals)

        # One query per model for the labels of every table on the page.
        keys: dict[str, set[Any]] = defaultdict(set)
        for key in wanted:
            field, rows, _ = found[key]
            keys[field].update(rows)
        labels = {
            "source_id": labels_for(Source, keys["source_id"]),
            "buyer_id": labels_for(Buyer, keys["buyer_id"]),
            "reason": _no_reason(keys["reason"]),
        }
        badges = source_badges(keys["source_id"])
        return [
            self._table(section, *found[section.key], labels, badges)
            for section in sections
        ]

    def section_charts(self, section: Section, table: ReportTable) -> list[SafeString]:
        if section.key != "credits-by-reason":
            return []
        return [
            bar_chart(
                [
                    (row["label"], float(row["amount"]))
                    for row in table.rows[:CHART_BARS]
                ],
                title="Credits by reason",
                value_text="{:,.2f}".format,
                description=(
                    f"Amount credited per return reason, the {CHART_BARS} largest. "
                    "The table below lists every reason."
                ),
            )
        ]

    # The scope every table shares -------------------------------------------

    def _returns_only(self) -> bool:
        """Whether the kind filter leaves returns in (credits and decisions are
        about returns only)."""
        return not self.filters.kind or self.filters.kind == Kind.RETURN

    def _dimensions(self, prefix: str = "") -> Q:
        f = self.filters
        q = Q()
        for name in ("source_id", "flow_id", "buyer_id"):
            value = getattr(f, name)
            if value is not None:
                q &= Q(**{f"{prefix}{name}": value})
        return q

    def _in_range(self, field: str) -> Q:
        f = self.filters
        return Q(**{f"{field}__gte": f.since, f"{field}__lt": f.until})

    # Credits ------------------------------------------------------------------

    def _credits(self, field: str) -> dict[Any, dict[str, Any]]:
        """Live credits granted in the range, grouped by `field` (one query on the
        credit's own columns: source, reason and buyer were copied onto it)."""
        if not self._returns_only():
            return {}
        credits = Credit.objects.filter(
            self._in_range("created_at"), self._dimensions(), voided_at__isnull=True
        )
        rows = {}
        for values in as_dicts(
            credits.values(field)
            .annotate(credits=Count("pk"), amount=Sum("amount"))
            .order_by()
        ):
            rows[values.pop(field)] = values
        return rows

    # Approval rate ------------------------------------------------------------

    def _approvals(
        self,
    ) -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
        """Decided and waiting returns per buyer and per reason: two queries, each
        grouped by (buyer, reason) and added up here for both tables."""
        if not self._returns_only():
            return {}, {}
        by_buyer: dict[Any, dict[str, Any]] = defaultdict(_approval_row)
        by_reason: dict[Any, dict[str, Any]] = defaultdict(_approval_row)
        steps = (
            ReturnTransition.objects.annotate(later=_later_decision())
            .filter(
                self._in_range("created_at"),
                self._dimensions("feedback__"),
                to_state__in=DECISIONS,
                # A return whose approval was undone (a sync source refused it)
                # left the review: it is counted nowhere.
                feedback__review_state__in=(*DECISIONS, State.DISPUTED),
            )
            .filter(later__isnull=True)
        )
        decided = (
            steps.values("feedback__buyer_id", "feedback__reason")
            .annotate(
                approved=Count("pk", filter=Q(feedback__review_state=State.APPROVED)),
                approved_at_intake=Count(
                    "pk",
                    filter=Q(feedback__review_state=State.APPROVED, from_state=""),
                ),
                rejected=Count("pk", filter=Q(feedback__review_state=State.REJECTED)),
                disputed=Count("pk", filter=Q(feedback__review_state=State.DISPUTED)),
            )
            .order_by()
        )
        for values in as_dicts(decided):
            buyer, reason = (
                values.pop("feedback__buyer_id"),
                values.pop("feedback__reason"),
            )
            for rows, key in ((by_buyer, buyer), (by_reason, reason)):
                for name, count in values.items():
                    rows[key][name] += count
        pending = (
            Feedback.objects.filter(
                self._in_range("received_at"),
                self._dimensions(),
                review_state=State.PENDING,
            )
            .values("buyer_id", "reason")
            .annotate(pending=Count("pk"))
            .order_by()
        )
        for values in as_dicts(pending):
            by_buyer[values["buyer_id"]]["pending"] += values["pending"]
            by_reason[values["reason"]]["pending"] += values["pending"]
        return dict(by_buyer), dict(by_reason)

    # Time to decision ---------------------------------------------------------

    def _time_to_decision(
        self,
    ) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
        """First decisions after review in the range, per buyer and in all, and
        what waits now."""
        rows: dict[Any, dict[str, Any]] = defaultdict(_timing_row)
        totals = _timing_row()
        if not self._returns_only():
            return {}, totals
        # The first decision is the step out of pending: a return is pending
        # once at most. Approvals at intake never waited and are not timed.
        first = ReturnTransition.objects.filter(
            self._in_range("created_at"),
            self._dimensions("feedback__"),
            from_state=State.PENDING,
            to_state__in=DECISIONS,
            feedback__review_state__in=(*DECISIONS, State.DISPUTED),
        )
        if is_postgresql():
            seconds = EpochSeconds(F("created_at") - F("feedback__received_at"))
            measures = {
                "decided": Count("pk"),
                "median": PercentileCont(seconds, fraction=0.5),
                "p90": PercentileCont(seconds, fraction=0.9),
            }
            for values in as_dicts(
                first.values("feedback__buyer_id").annotate(**measures).order_by()
            ):
                rows[values.pop("feedback__buyer_id")].update(values)
            totals.update(first.aggregate(**measures))
        else:
            _percentiles_here(first, rows, totals)

        now = timezone.now()
        for values in as_dicts(
            Feedback.objects.filter(self._dimensions(), review_state__in=WAITING)
            .values("buyer_id")
            .annotate(waiting=Count("pk"), oldest=Min("received_at"))
            .order_by()
        ):
            row = rows[values["buyer_id"]]
            row["waiting"] = values["waiting"]
            row["oldest_waiting_s"] = (now - values["oldest"]).total_seconds()
            totals["waiting"] += values["waiting"]
            totals["oldest_waiting_s"] = max(
                totals["oldest_waiting_s"] or 0.0, row["oldest_waiting_s"]
            )
        return dict(rows), totals

    # Tables -------------------------------------------------------------------

    def _table(
        self,
        section: Section,
        field: str,
        found: dict[Any, dict[str, Any]],
        totals: dict[str, Any],
        labels: dict[str, dict[Any, str]],
        badges: dict[Any, str],
    ) -> ReportTable:
        label = {"source_id": "Source", "buyer_id": "Buyer", "reason": "Reason"}[field]
        names = labels[field]
        shown = badges if field == "source_id" else {}
        rows = [
            {
                "key": key,
                "label": names.get(key, str(key)),
                "badge": shown.get(key),
                **values,
            }
            for key, values in found.items()
        ]
        if section.group == CREDITS:
            return _credit_table(label, rows, totals)
        if section.group == APPROVAL:
            return _approval_table(label, rows)
        return _timing_table(label, rows, totals)


def _later_decision() -> Subquery:
    """A decision on the same return after the outer one (a rejection decided
    again after its dispute): the outer one is then not the return's latest.

    A scalar subquery with LIMIT 1, not NOT EXISTS: PostgreSQL runs it once per
    decision in the range through the (feedback, created_at) index, where it
    would hash an anti-join over every decision step ever written."""
    later = ReturnTransition.objects.filter(
        Q(created_at__gt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk")),
        feedback_id=OuterRef("feedback_id"),
        to_state__in=DECISIONS,
    )
    return Subquery(later.values("pk")[:1])


def _percentiles_here(
    first: QuerySet[ReturnTransition],
    rows: dict[Any, dict[str, Any]],
    totals: dict[str, Any],
) -> None:
    """SQLite has no percentile_cont: one query for the pairs, the rest here."""
    durations: dict[Any, list[float]] = defaultdict(list)
    for buyer, decided_at, received_at in first.values_list(
        "feedback__buyer_id", "created_at", "feedback__received_at"
    ).iterator(chunk_size=5000):
        durations[buyer].append((decided_at - received_at).total_seconds())
    for buyer, values in durations.items():
        rows[buyer].update(
            decided=len(values),
            median=percentile(values, 0.5),
            p90=percentile(values, 0.9),
        )
    every = [value for values in durations.values() for value in values]
    totals.update(
        decided=len(every), median=percentile(every, 0.5), p90=percentile(every, 0.9)
    )


def _approval_row() -> dict[str, Any]:
    return dict.fromkeys(
        ("approved", "approved_at_intake", "rejected", "disputed", "pending"), 0
    )


def _timing_row() -> dict[str, Any]:
    return {
        "decided": 0,
        "median": None,
        "p90": None,
        "waiting": 0,
        "oldest_waiting_s": None,
    }


def _credit_totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    return {
        "credits": sum(row["credits"] for row in rows),
        "amount": sum((row["amount"] or ZERO for row in rows), ZERO),
    }


def _credit_table(
    label: str, rows: list[dict[str, Any]], totals: dict[str, Any]
) -> ReportTable:
    total = float(totals["amount"])
    for row in rows:
        row["amount"] = row["amount"] or ZERO
        row["share"] = rate(float(row["amount"]), total)
    rows.sort(key=lambda r: (-r["amount"], -r["credits"], r["label"]))
    columns = [
        Column("label", label, "text"),
        Column("credits", "Credits"),
        Column("amount", "Amount", "money"),
        Column("share", "Share of amount", "rate"),
    ]
    return ReportTable(
        columns, rows, {"label": "Total", **totals, "share": rate(total, total)}
    )


def _approval_table(label: str, rows: list[dict[str, Any]]) -> ReportTable:
    totals: dict[str, Any] = {"label": "Total", **_approval_row()}
    for row in rows:
        for name in _approval_row():
            totals[name] += row[name]
    for row in (*rows, totals):
        row["decided"] = row["approved"] + row["rejected"]
        row["approval_rate"] = rate(row["approved"], row["decided"])
        row["waiting"] = row["pending"] + row["disputed"]
    rows.sort(key=lambda r: (-r["decided"], -r["waiting"], r["label"]))
    # The rate first: on a phone the table scrolls, and it is what is read.
    columns = [
        Column("label", label, "text"),
        Column("approval_rate", "Approval rate", "rate"),
        Column("decided", "Decided"),
        Column("approved", "Approved"),
        Column("approved_at_intake", "of which at intake"),
        Column("rejected", "Rejected"),
        Column("pending", "Waiting: pending"),
        Column("disputed", "Waiting: disputed"),
    ]
    return ReportTable(columns, rows, totals)


def _timing_table(
    label: str, rows: list[dict[str, Any]], totals: dict[str, Any]
) -> ReportTable:
    rows.sort(key=lambda r: (-r["decided"], -r["waiting"], r["label"]))
    columns = [
        Column("label", label, "text"),
        Column("median", "Median", "seconds"),
        Column("p90", "90th percentile", "seconds"),
        Column("decided", "Decided after review"),
        Column("waiting", "Waiting now"),
        Column("oldest_waiting_s", "Oldest waiting", "seconds"),
    ]
    return ReportTable(columns, rows, {"label": "Total", **totals})
