"""The admin's pages for CSV imports."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from feedback.imports.models import FeedbackImport
from feedback.imports.services import feedback_import_create, feedback_import_process
from tests.factories import DeliveryEventFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def finished_import(buyer):
    delivery = DeliveryEventFactory(buyer=buyer)
    content = f"event_id,type\r\n{delivery.event_id},return\r\n{'f' * 24},return\r\n"
    feedback_import = feedback_import_create(
        buyer=buyer, user=None, file=content.encode(), filename="june.csv"
    )
    feedback_import_process(import_id=feedback_import.pk)
    feedback_import.refresh_from_db()
    return feedback_import


def test_list_and_detail_show_progress_and_link_the_refused_rows(
    staff_client, finished_import, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        listing = staff_client.get(reverse("admin:feedback_feedbackimport_changelist"))
    assert listing.status_code == 200
    assert "100% (2 of 2)" in listing.content.decode()

    detail = staff_client.get(
        reverse("admin:feedback_feedbackimport_change", args=[finished_import.pk])
    )
    assert detail.status_code == 200
    url = reverse("admin:feedback_feedbackimport_refused", args=[finished_import.pk])
    assert url in detail.content.decode()

    download = staff_client.get(url)
    assert download.status_code == 200
    assert (
        download.content.decode()
        .splitlines()[1]
        .endswith(",3,No delivery of yours has this event id.")
    )


def test_requeue_action_reopens_a_failed_import(
    staff_client, finished_import, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(
        "feedback.imports.tasks.process_feedback_import_task.delay",
        queued.append,
    )
    FeedbackImport.objects.filter(pk=finished_import.pk).update(
        status="failed", error="Processing stopped: RuntimeError."
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:feedback_feedbackimport_changelist"),
            {"action": "requeue", "_selected_action": [finished_import.pk]},
            follow=True,
        )

    assert "1 import queued again." in response.content.decode()
    assert queued == [finished_import.pk]
    finished_import.refresh_from_db()
    assert (finished_import.status, finished_import.error) == ("queued", "")


def test_requeueing_needs_the_change_permission(client, finished_import):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_feedbackimport"))
    client.force_login(viewer)
    listing = reverse("admin:feedback_feedbackimport_changelist")
    FeedbackImport.objects.filter(pk=finished_import.pk).update(status="failed")

    assert 'value="requeue"' not in client.get(listing).content.decode()
    client.post(
        listing, {"action": "requeue", "_selected_action": [finished_import.pk]}
    )
    finished_import.refresh_from_db()
    assert finished_import.status == "failed"


def test_a_buyer_user_cannot_reach_the_admin_download(
    client, buyer_user, finished_import
):
    client.force_login(buyer_user)
    url = reverse("admin:feedback_feedbackimport_refused", args=[finished_import.pk])

    response = client.get(url)

    assert response.status_code == 302  # to the admin login
