from django.urls import path

from feedback.api import (
    corrections,
    imports,
    privacy,
    returns,
    sources,
    suppression,
    views,
)

app_name = "api"
urlpatterns = [
    path("events", views.EventRecordApi.as_view(), name="event-record"),
    path("events/<str:event_id>", views.EventDetailApi.as_view(), name="event-detail"),
    path("feedback", views.FeedbackApi.as_view(), name="feedback-list"),
    path(
        "feedback/imports",
        imports.FeedbackImportCreateApi.as_view(),
        name="feedback-import-create",
    ),
    path(
        "feedback/imports/<str:public_id>",
        imports.FeedbackImportDetailApi.as_view(),
        name="feedback-import-detail",
    ),
    path(
        "feedback/imports/<str:public_id>/refused.csv",
        imports.FeedbackImportRefusedCsvApi.as_view(),
        name="feedback-import-refused-csv",
    ),
    path(
        "feedback/<uuid:feedback_id>",
        views.FeedbackDetailApi.as_view(),
        name="feedback-detail",
    ),
    path(
        "privacy/erasures",
        privacy.ErasureCreateApi.as_view(),
        name="privacy-erasure-create",
    ),
    path(
        "feedback/<uuid:feedback_id>/retract",
        corrections.FeedbackRetractApi.as_view(),
        name="feedback-retract",
    ),
    path(
        "feedback/<uuid:feedback_id>/amend",
        corrections.FeedbackAmendApi.as_view(),
        name="feedback-amend",
    ),
    path("returns", returns.ReturnListApi.as_view(), name="return-list"),
    path(
        "returns/<uuid:feedback_id>/decision",
        returns.ReturnDecideApi.as_view(),
        name="return-decide",
    ),
    path(
        "returns/<uuid:feedback_id>/dispute",
        returns.ReturnDisputeApi.as_view(),
        name="return-dispute",
    ),
    path("credits", returns.CreditListApi.as_view(), name="credit-list"),
    path("sources/<str:slug>", sources.SourceDetailApi.as_view(), name="source-detail"),
    path(
        "sources/<str:slug>/pause",
        sources.SourcePauseApi.as_view(),
        name="source-pause",
    ),
    path(
        "sources/<str:slug>/resume",
        sources.SourceResumeApi.as_view(),
        name="source-resume",
    ),
    path(
        "suppression/check",
        suppression.SuppressionCheckApi.as_view(),
        name="suppression-check",
    ),
    path(
        "suppression/<slug:slug>/entries",
        suppression.SuppressionEntriesApi.as_view(),
        name="suppression-entries",
    ),
]
