from django.urls import path

from feedback.api import views

app_name = "api"
urlpatterns = [
    path("events", views.EventRecordApi.as_view(), name="event-record"),
    path("events/<str:event_id>", views.EventDetailApi.as_view(), name="event-detail"),
    path("feedback", views.FeedbackApi.as_view(), name="feedback-list"),
    path(
        "feedback/<uuid:feedback_id>",
        views.FeedbackDetailApi.as_view(),
        name="feedback-detail",
    ),
]
