"""FilterSets shared by the API and the portal."""

import re
from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_filters.fields import IsoDateTimeField

from feedback.models import EVENT_ID_PATTERN, Buyer, DeliveryEvent, Feedback, Flow
from feedback.selectors import flow_list_for_buyer
from feedback.services import as_utc, normalize_email, normalize_phone
from sources.models import Kind


class UTCIsoDateTimeField(IsoDateTimeField):
    def clean(self, value: Any) -> datetime | None:
        cleaned = super().clean(value)
        if cleaned is None:
            return None
        try:
            return as_utc(cleaned)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """ISO 8601 instants compared in UTC, whatever offset the caller wrote."""

    field_class = UTCIsoDateTimeField


class FeedbackFilter(django_filters.FilterSet):
    event_id = django_filters.CharFilter(field_name="delivery__event_id")
    reference = django_filters.CharFilter(field_name="delivery__reference")
    kind = django_filters.ChoiceFilter(choices=Kind.choices)
    type = django_filters.ChoiceFilter(field_name="kind", choices=Kind.choices)
    outcome = django_filters.ChoiceFilter(choices=Feedback.Outcome.choices)
    channel = django_filters.ChoiceFilter(choices=Feedback.Channel.choices)
    since = UTCIsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    until = UTCIsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Feedback
        fields = ["event_id", "reference", "kind", "outcome", "channel"]


def _start_of_day(value: date) -> datetime:
    return timezone.make_aware(datetime.combine(value, time.min))


class FeedbackStatus:
    """A delivery's feedback status, derived from its feedback (none recorded,
    an accepted conversion, an accepted return, or something refused)."""

    NONE = "none"
    CONVERTED = "converted"
    RETURNED = "returned"
    REFUSED = "refused"
    CHOICES = [
        (NONE, "No feedback"),
        (CONVERTED, "Converted"),
        (RETURNED, "Returned"),
        (REFUSED, "Refused"),
    ]


class DeliveryFilter(django_filters.FilterSet):
    """Deliveries by date range, flow, feedback status and a search box.

    The queryset must carry the annotations of
    `selectors.delivery_feedback_status_annotations`.
    """

    delivered_from = django_filters.DateFilter(
        label="Delivered from",
        method="filter_delivered_from",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    delivered_to = django_filters.DateFilter(
        label="Delivered to",
        method="filter_delivered_to",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    flow = django_filters.ModelChoiceFilter(
        queryset=Flow.objects.none(), to_field_name="slug", empty_label="All flows"
    )
    feedback = django_filters.ChoiceFilter(
        label="Feedback",
        choices=FeedbackStatus.CHOICES,
        empty_label="Any feedback status",
        method="filter_feedback",
    )
    q = django_filters.CharFilter(
        label="Search",
        max_length=254,
        method="filter_search",
        widget=forms.TextInput(attrs={"type": "search"}),
    )

    class Meta:
        model = DeliveryEvent
        fields: list[str] = []

    def __init__(self, *args: Any, buyer: Buyer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters["flow"].queryset = flow_list_for_buyer(buyer=buyer)
        self.form.fields[
            "q"
        ].help_text = "Event id, your reference, email, phone or name."

    def filter_delivered_from(
        self, queryset: QuerySet[DeliveryEvent], name: str, value: date
    ) -> QuerySet[DeliveryEvent]:
        return queryset.filter(delivered_at__gte=_start_of_day(value))

    def filter_delivered_to(
        self, queryset: QuerySet[DeliveryEvent], name: str, value: date
    ) -> QuerySet[DeliveryEvent]:
        # Inclusive of the whole day the user picked; the last day there is
        # has no day after it.
        if value >= date.max:
            return queryset
        return queryset.filter(
            delivered_at__lt=_start_of_day(value + timedelta(days=1))
        )

    def filter_feedback(
        self, queryset: QuerySet[DeliveryEvent], name: str, value: str
    ) -> QuerySet[DeliveryEvent]:
        lookups = {
            FeedbackStatus.NONE: Q(has_feedback=False),
            FeedbackStatus.CONVERTED: Q(is_converted=True),
            FeedbackStatus.RETURNED: Q(is_returned=True),
            FeedbackStatus.REFUSED: Q(is_refused=True),
        }
        return queryset.filter(lookups[value])

    def filter_search(
        self, queryset: QuerySet[DeliveryEvent], name: str, value: str
    ) -> QuerySet[DeliveryEvent]:
        """Exact matches only, each on an index: event id, reference,
        normalised email or phone, or a name (last name, or first and last),
        any case."""
        text = value.strip()
        if not text:
            return queryset
        match = Q(reference=text)
        if re.fullmatch(EVENT_ID_PATTERN, text.lower()):
            match |= Q(event_id=text.lower())
        if "@" in text:
            match |= Q(lead__email_normalized=normalize_email(text))
        phone = normalize_phone(text)
        if len(phone) >= 7 and not re.search(r"[A-Za-z]", text):
            match |= Q(lead__phone_normalized=phone)
        if "@" not in text and re.search(r"[^\W\d_]", text):
            words = text.split()
            match |= Q(lead__data__last_name__iexact=" ".join(words))
            if len(words) > 1:
                match |= Q(
                    lead__data__first_name__iexact=words[0],
                    lead__data__last_name__iexact=" ".join(words[1:]),
                )
        return queryset.filter(match)
