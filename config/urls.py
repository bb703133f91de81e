from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz, metrics, readyz
from feedback.api.views import LeadConduitFeedbackApi
from feedback.portal.accounts import PasswordResetView
from reporting.dashboard import front_door

# Problem+json for the API's URLs, Django's pages elsewhere.
handler400 = "feedback.api.errors.bad_request"
handler404 = "feedback.api.errors.page_not_found"

# The admin is Leadback's, and its "View site" link leads to the front door.
admin.site.site_header = "Leadback"
admin.site.site_title = "Leadback"
admin.site.index_title = "Administration"
admin.site.site_url = "/"

urlpatterns = [
    # Staff land on the dashboard, buyers in the portal, visitors on the login.
    path("", front_door, name="front-door"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("reports/", include("reporting.urls")),
    path("portal/", include("feedback.portal.urls")),
    # Log in, log out and password reset by email, with the portal's templates; the
    # reset request is throttled.
    path(
        "accounts/password_reset/",
        PasswordResetView.as_view(),
        name="password_reset",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("feedback", LeadConduitFeedbackApi.as_view(), name="lc-feedback"),
    path("api/v1/", include("feedback.api.urls")),
    path("api/v1/", include("monitoring.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"
    ),
]

if settings.LEADBACK_DEMO_RECEIVER:
    # The pretend source `make demo` forwards feedback to.
    urlpatterns.append(path("demo/receiver/", include("feedback.demo.receiver")))
