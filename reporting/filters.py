"""The filter bar every report shares: dates, the date basis and four dimensions."""

import datetime
from dataclasses import dataclass, replace

from django import forms
from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.models import Buyer, Flow
from sources.models import Kind, Source

DEFAULT_DAYS = 30
ALL_KINDS = "all"
# A year and a leap day, twice: more than that is a query nobody reads on one page.
MAX_DAYS = 731
ONE_DAY = datetime.timedelta(days=1)


class Basis(models.TextChoices):
    """Which date the range applies to."""

    DELIVERY = "delivery", "Delivery date"
    FEEDBACK = "feedback", "Feedback date"


@dataclass(frozen=True)
class ReportFilters:
    """A validated filter: an inclusive date range in the current time zone."""

    start: datetime.date
    end: datetime.date
    basis: str = Basis.DELIVERY
    source_id: int | None = None
    flow_id: int | None = None
    buyer_id: int | None = None
    kind: str | None = None

    @property
    def since(self) -> datetime.datetime:
        return _start_of(self.start)

    @property
    def until(self) -> datetime.datetime:
        """The first instant after the range."""
        return _start_of(self.end + datetime.timedelta(days=1))

    @property
    def days(self) -> list[datetime.date]:
        span = (self.end - self.start).days + 1
        return [self.start + datetime.timedelta(days=n) for n in range(span)]

    @property
    def by_delivery(self) -> bool:
        return self.basis == Basis.DELIVERY

    def delivery_q(self, prefix: str = "") -> Q:
        """Deliveries delivered in the range, narrowed by source, flow and buyer.

        The kind does not narrow deliveries: a delivery has no kind."""
        q = Q(
            **{
                f"{prefix}delivered_at__gte": self.since,
                f"{prefix}delivered_at__lt": self.until,
            }
        )
        return q & self._dimensions_q(prefix)

    def feedback_q(self, prefix: str = "") -> Q:
        """Feedback counted in the range under the chosen basis, narrowed by every
        dimension. On the delivery basis, every feedback about a delivery delivered
        in the range counts, whenever it arrived."""
        if self.by_delivery:
            q = Q(
                **{
                    f"{prefix}delivery__delivered_at__gte": self.since,
                    f"{prefix}delivery__delivered_at__lt": self.until,
                }
            )
        else:
            q = Q(
                **{
                    f"{prefix}received_at__gte": self.since,
                    f"{prefix}received_at__lt": self.until,
                }
            )
        q &= self._dimensions_q(prefix)
        if self.kind:
            q &= Q(**{f"{prefix}kind": self.kind})
        # Retracted feedback counts nowhere (DESIGN §12).
        q &= Q(**{f"{prefix}retracted_at__isnull": True})
        return q

    def previous(self) -> "ReportFilters":
        """The same filters over the period of the same length just before."""
        length = self.end - self.start + datetime.timedelta(days=1)
        return replace(self, start=self.start - length, end=self.start - ONE_DAY)

    def describe(self) -> str:
        """The sentence the page shows so nobody misreads the numbers."""
        dates = f"{self.start.isoformat()} to {self.end.isoformat()}"
        if self.by_delivery:
            return (
                f"Counted by delivery date: deliveries delivered from {dates}, and "
                "all feedback about them whenever it arrived."
            )
        return (
            f"Counted by feedback date: feedback received from {dates}; delivered "
            "and cost count the deliveries delivered on the same dates."
        )

    def _dimensions_q(self, prefix: str) -> Q:
        q = Q()
        for field in ("source_id", "flow_id", "buyer_id"):
            value = getattr(self, field)
            if value is not None:
                q &= Q(**{f"{prefix}{field}": value})
        return q


def _start_of(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(
        datetime.datetime.combine(day, datetime.time.min),
        timezone.get_current_timezone(),
    )


def default_filters() -> ReportFilters:
    today = timezone.localdate()
    return ReportFilters(
        start=today - datetime.timedelta(days=DEFAULT_DAYS - 1), end=today
    )


class ReportFilterForm(forms.Form):
    """The shared filter bar. Unbound (no query string) means the last 30 days."""

    start = forms.DateField(
        label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    basis = forms.ChoiceField(
        label="Count by", choices=Basis.choices, initial=Basis.DELIVERY
    )
    source = forms.ModelChoiceField(
        queryset=Source.objects.order_by("name"), required=False, empty_label="All"
    )
    flow = forms.ModelChoiceField(
        queryset=Flow.objects.order_by("name"), required=False, empty_label="All"
    )
    buyer = forms.ModelChoiceField(
        queryset=Buyer.objects.order_by("name"), required=False, empty_label="All"
    )
    # "all" is asked for: a report that narrows to one kind by default (by
    # reason: returns) shows every kind only when told to.
    kind = forms.ChoiceField(
        choices=[(ALL_KINDS, "All"), *Kind.choices], required=False
    )

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if isinstance(start, datetime.date) and isinstance(end, datetime.date):
            if start > end:
                raise forms.ValidationError(
                    f"The start date {start.isoformat()} is after the end date "
                    f"{end.isoformat()}."
                )
            if (end - start).days + 1 > MAX_DAYS:
                raise forms.ValidationError(
                    f"A report covers at most {MAX_DAYS} days; this range has "
                    f"{(end - start).days + 1}."
                )
        return cleaned

    def filters(self) -> ReportFilters:
        """The filters of a valid form."""
        data = self.cleaned_data
        return ReportFilters(
            start=data["start"],
            end=data["end"],
            basis=data["basis"],
            source_id=data["source"].pk if data.get("source") else None,
            flow_id=data["flow"].pk if data.get("flow") else None,
            buyer_id=data["buyer"].pk if data.get("buyer") else None,
            kind=data.get("kind") if data.get("kind") not in ("", ALL_KINDS) else None,
        )


def filter_form_for(
    params: dict[str, str], *, default_kind: str | None = None
) -> ReportFilterForm:
    """A bound form for a query string, with the defaults filled in where absent
    (`default_kind` when the query names no kind)."""
    defaults = default_filters()
    data = {
        "start": defaults.start.isoformat(),
        "end": defaults.end.isoformat(),
        "basis": defaults.basis,
    }
    if default_kind:
        data["kind"] = default_kind
    data.update({key: value for key, value in params.items() if value != ""})
    return ReportFilterForm(data)
