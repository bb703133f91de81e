"""The digest admin: create and change through the service, preview, send test."""

import datetime
from datetime import UTC

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from reporting.models import Digest
from sources.models import Kind
from tests.factories import (
    DeliveryEventFactory,
    FeedbackFactory,
    SourceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def digest():
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    return Digest.objects.create(
        slug="bluesky-weekly",
        source=source,
        timezone="Europe/Berlin",
        recipients=["ops@bluesky.example"],
    )


def form_data(source, **changes):
    return {
        "slug": "bluesky-daily",
        "source": source.pk,
        "enabled": "on",
        "every": "day",
        "weekday": "0",
        "at": "08:00",
        "timezone": "America/Chicago",
        "channel": "email",
        "recipients": '["ops@bluesky.example"]',
        "sends-TOTAL_FORMS": "0",
        "sends-INITIAL_FORMS": "0",
        "sends-MIN_NUM_FORMS": "0",
        "sends-MAX_NUM_FORMS": "1000",
    } | changes


@time_machine.travel(NOW, tick=False)
def test_the_list_shows_the_schedule_and_the_next_send(staff_client, digest):
    response = staff_client.get(reverse("admin:reporting_digest_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Mondays at 08:00 Europe/Berlin" in body
    assert "2026-12-14 07:00" in body  # next Monday 08:00 Berlin, in UTC
    assert reverse("admin:reporting_digest_preview", args=[digest.pk]) in body


def test_a_digest_is_added_and_renamed_in_place(staff_client):
    source = SourceFactory()
    add = reverse("admin:reporting_digest_add")
    response = staff_client.post(add, form_data(source))
    assert response.status_code == 302, response.content.decode()[:2000]
    digest = Digest.objects.get()
    assert (digest.every, digest.timezone) == ("day", "America/Chicago")

    change = reverse("admin:reporting_digest_change", args=[digest.pk])
    response = staff_client.post(change, form_data(source, slug="renamed"))
    assert response.status_code == 302
    assert list(Digest.objects.values_list("pk", "slug")) == [(digest.pk, "renamed")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"timezone": "Mars/Olympus"},
            "&#x27;Mars/Olympus&#x27; is not a known time zone",
        ),
        ({"recipients": '["nobody"]'}, "&#x27;nobody&#x27; is not an email address."),
        ({"recipients": "[]"}, "The email channel needs at least one recipient."),
        (
            {"channel": "batch", "recipients": "[]"},
            "has no batch feedback config, so it has no batch transport",
        ),
    ],
)
def test_wrong_settings_are_form_errors(staff_client, changes, message):
    source = SourceFactory()
    response = staff_client.post(
        reverse("admin:reporting_digest_add"), form_data(source, **changes)
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Digest.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_the_preview_shows_the_last_complete_period(staff_client, digest):
    delivery = DeliveryEventFactory(
        lead__source=digest.source,
        delivered_at=datetime.datetime(2026, 12, 2, 9, tzinfo=UTC),
    )
    FeedbackFactory(
        delivery=delivery,
        kind=Kind.RETURN,
        reason="<b>Bad phone</b>",
        received_at=datetime.datetime(2026, 12, 3, 9, tzinfo=UTC),
    )
    url = reverse("admin:reporting_digest_preview", args=[digest.pk])

    response = staff_client.get(url)

    assert response.status_code == 200
    body = response.content.decode()
    # Wednesday 9 December: the last complete Monday-to-Sunday week.
    assert "Mon 30 Nov to Sun 06 Dec 2026 (Europe/Berlin)" in body
    # The email is one attribute value: escaped whole, so nothing leaks out.
    assert 'sandbox="" srcdoc="&lt;!DOCTYPE html&gt;' in body
    html = response.context["rendered"].html
    assert "&lt;b&gt;Bad phone&lt;/b&gt;" in html  # the reason is escaped
    assert "Returns: 1 (previous 0, +1)" in response.context["rendered"].text

    csv_response = staff_client.get(
        reverse("admin:reporting_digest_preview_csv", args=[digest.pk])
    )
    assert csv_response["Content-Type"] == "text/csv; charset=utf-8"
    assert delivery.event_id in csv_response.content.decode()


def test_send_test_emails_the_address_typed(staff_client, digest):
    url = reverse("admin:reporting_digest_preview", args=[digest.pk])
    response = staff_client.post(url, {"to": "me@seller.example"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["me@seller.example"]
    assert message.subject.startswith("[Test] Bluesky Leads: feedback digest")
    assert [alt.mimetype for alt in message.alternatives] == ["text/html"]
    assert message.attachments[0][0].endswith("-returns.csv")


def test_send_test_refuses_a_bad_address_with_a_message(staff_client, digest):
    url = reverse("admin:reporting_digest_preview", args=[digest.pk])
    response = staff_client.post(url, {"to": "not an address\x00"})
    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert mail.outbox == []


def test_view_only_staff_may_preview_but_not_send(client, digest):
    user = UserFactory(username="viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_digest"))
    client.force_login(user)
    url = reverse("admin:reporting_digest_preview", args=[digest.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"to": "me@seller.example"}).status_code == 403
    assert mail.outbox == []


def test_the_analyst_role_previews_and_the_seller_admin_sends(client, digest):
    call_command("setup_roles", verbosity=0)
    url = reverse("admin:reporting_digest_preview", args=[digest.pk])
    analyst = UserFactory(username="ann", is_staff=True)
    analyst.groups.add(Group.objects.get(name="Analyst"))
    client.force_login(analyst)
    assert client.get(url).status_code == 200
    assert client.post(url, {"to": "me@seller.example"}).status_code == 403

    seller = UserFactory(username="sam", is_staff=True)
    seller.groups.add(Group.objects.get(name="Seller admin"))
    client.force_login(seller)
    assert client.post(url, {"to": "me@seller.example"}).status_code == 302
    assert len(mail.outbox) == 1


def test_the_admin_index_lists_digests_under_reporting(staff_client):
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["reporting"])):
        response = staff_client.get(url)
        assert response.status_code == 200
        assert reverse("admin:reporting_digest_changelist") in response.content.decode()
