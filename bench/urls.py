from django.urls import include, path

from bench.views import ceiling, suppression_ceiling

urlpatterns = [
    path("bench/ceiling", ceiling, name="bench-ceiling"),
    path(
        "bench/suppression-ceiling",
        suppression_ceiling,
        name="bench-suppression-ceiling",
    ),
    path("", include("config.urls")),
]
