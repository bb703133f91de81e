from django.urls import path

from monitoring import api

app_name = "monitoring-api"
urlpatterns = [
    path("alerts", api.AlertListApi.as_view(), name="alert-list"),
]
