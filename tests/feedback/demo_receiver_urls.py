"""The project's URLs plus the demo receiver, which config/urls.py routes only when
LEADBACK_DEMO_RECEIVER is on at start-up (tests switch it on later)."""

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("demo/receiver/", include("feedback.demo.receiver")),
]
