"""FilterSets shared by the API and the portal."""

from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from feedback.models import Feedback
from feedback.services import as_utc
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
