"""The alerts over the API (DESIGN §11): `GET /api/v1/alerts`, integration keys."""

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from feedback.api.permissions import IsIntegrationKey
from feedback.api.views import FeedbackPagination
from monitoring.models import Alert
from monitoring.selectors import alert_list


class AlertFilter(django_filters.FilterSet):
    monitor = django_filters.CharFilter(
        field_name="monitor__slug", help_text="Only this monitor's alerts (its slug)."
    )
    state = django_filters.ChoiceFilter(choices=Alert.State.choices)

    class Meta:
        model = Alert
        fields = ["monitor", "state"]


class AlertPagination(FeedbackPagination):
    ordering = ("-at", "-id")


class AlertListApi(GenericAPIView[Alert]):
    """Alerts, newest first: each change of a monitor's state with its numbers."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.CharField(source="public_id")
        monitor = serializers.CharField(source="monitor.slug")
        metric = serializers.CharField(source="monitor.metric")
        state = serializers.ChoiceField(choices=Alert.State.choices)
        value = serializers.FloatField(allow_null=True)
        low = serializers.FloatField(allow_null=True)
        high = serializers.FloatField(allow_null=True)
        sample = serializers.IntegerField()
        threshold = serializers.FloatField()
        window_start = serializers.DateField()
        window_end = serializers.DateField()
        at = serializers.DateTimeField()

    permission_classes = [IsIntegrationKey]
    filterset_class = AlertFilter
    pagination_class = AlertPagination
    serializer_class = OutputSerializer

    def get_queryset(self) -> QuerySet[Alert]:
        return alert_list()

    @extend_schema(
        operation_id="api_v1_alerts_list",
        responses={200: OutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.OutputSerializer(page, many=True).data)
