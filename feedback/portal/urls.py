from django.urls import path

from feedback.portal import corrections, returns, summary, views

app_name = "portal"
urlpatterns = [
    path("", views.delivery_list, name="delivery-list"),
    path("deliveries.csv", views.delivery_csv, name="delivery-csv"),
    path(
        "deliveries/feedback/",
        views.delivery_bulk_feedback,
        name="delivery-bulk-feedback",
    ),
    path("deliveries/<str:event_id>/", views.delivery_detail, name="delivery-detail"),
    path(
        "deliveries/<str:event_id>/feedback/<str:kind>/",
        views.delivery_feedback,
        name="delivery-feedback",
    ),
    path(
        "feedback/<uuid:public_id>/<str:action>/",
        corrections.feedback_correct,
        name="feedback-correct",
    ),
    path("summary/", summary.summary, name="summary"),
    path("returns/", returns.return_list, name="return-list"),
    path("returns/<uuid:public_id>/", returns.return_detail, name="return-detail"),
    path(
        "returns/<uuid:public_id>/dispute/",
        returns.return_dispute_view,
        name="return-dispute",
    ),
    path(
        "returns/<uuid:public_id>/evidence/<int:step>/",
        returns.return_evidence,
        name="return-evidence",
    ),
    path("credits/", returns.credit_list, name="credit-list"),
    path("credits.csv", returns.credit_csv, name="credit-csv"),
    path("imports/", views.import_upload, name="import-upload"),
    path("imports/<str:public_id>/", views.import_detail, name="import-detail"),
    path(
        "imports/<str:public_id>/progress/",
        views.import_progress,
        name="import-progress",
    ),
    path(
        "imports/<str:public_id>/refused.csv",
        views.import_refused_csv,
        name="import-refused-csv",
    ),
    path("keys/", views.api_key_list, name="apikey-list"),
    path(
        "keys/<uuid:key_id>/revoke/",
        views.api_key_revoke_view,
        name="apikey-revoke",
    ),
    path("integration/", views.integration, name="integration"),
    path("switch/", views.buyer_switch, name="buyer-switch"),
]
