from django.contrib import admin
from django.urls import path

from reporting import views

app_name = "reporting"

urlpatterns = [
    path("", admin.site.admin_view(views.report_index), name="report-index"),
    path(
        "<slug:code>/",
        admin.site.admin_view(views.report_detail),
        name="report-detail",
    ),
]
