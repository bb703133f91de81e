"""The delivery admin: notifications, their attempts, resending, the dead letters,
and how a config that Leadback switched off says so."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import SUCCESS, WARNING, get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import feedback.forwarding.admin as feedback_admin
from feedback.forwarding.engine import notifications_deliver_due
from feedback.forwarding.models import (
    DeadNotification,
    Notification,
    NotificationAttempt,
)
from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback
from sources.models import FeedbackConfig, FieldMapping
from tests.factories import (
    DeliveryEventFactory,
    FeedbackFactory,
    SourceFactory,
    UserFactory,
)
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.django_db

Status = Notification.Status
NOTIFICATIONS = reverse("admin:feedback_notification_changelist")
DEAD_LETTERS = reverse("admin:feedback_deadnotification_changelist")
CONFIGS = reverse("admin:sources_feedbackconfig_changelist")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def engine_settings(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = [0]  # one try, then dead
    settings.LEADBACK_RETRY_JITTER = 0.0
    return settings


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def viewer_client(client):
    """Staff who may look at notifications but not change (so not resend) them."""
    user = UserFactory(username="viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_notification", "view_deadnotification"]
        )
    )
    client.force_login(user)
    return client


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer(Reply(500, b'{"error": "down for maintenance"}')) as server:
        yield server


def change_url(notification: Notification, *, dead: bool = False) -> str:
    name = "deadnotification" if dead else "notification"
    return reverse(f"admin:feedback_{name}_change", args=[notification.pk])


def resend_url(notification: Notification, *, dead: bool = False) -> str:
    name = "deadnotification" if dead else "notification"
    return reverse(f"admin:feedback_{name}_resend", args=[notification.pk])


def make_config(source, **fields) -> FeedbackConfig:
    values = {
        "kind": "return",
        "method": "json",
        "url": "https://returns.example/api",
    } | fields
    return FeedbackConfig.objects.create(source=source, **values)


def make_notification(
    status: str = Status.DEAD,
    *,
    reason: str = "HTTP 503 Service Unavailable",
    attempts: int = 1,
    config: FeedbackConfig | None = None,
) -> Notification:
    """A notification as the engine leaves it, with its attempt rows."""
    feedback = FeedbackFactory(kind="return")
    config = config or make_config(feedback.source)
    now = timezone.now()
    notification = Notification.objects.create(
        feedback=feedback,
        config=config,
        source=feedback.source,
        kind=feedback.kind,
        lead_delivered_at=feedback.delivery.delivered_at,
        status=status,
        reason=reason,
        attempt_count=attempts,
        schedule_tries=attempts,
        next_attempt_at=now if status in Notification.OPEN_STATUSES else None,
        finished_at=None if status in Notification.OPEN_STATUSES else now,
    )
    for number in range(1, attempts + 1):
        NotificationAttempt.objects.create(
            notification=notification,
            number=number,
            started_at=now - timedelta(minutes=attempts - number),
            duration_ms=1234,
            request_method="POST",
            request_url=f"https://returns.example/api?try={number}",
            request_headers={"Content-Type": "application/json"},
            request_body=f'{{"event": "{feedback.delivery.event_id}"}}',
            response_status=503,
            response_headers={"Retry-After": "30"},
            response_body=f"<html>busy, try {number}</html>",
            outcome="error",
            reason=reason,
            error_class="ServerError",
        )
    return notification


def messages_of(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def dead_notification_from_the_engine(buyer, server: RecordingServer) -> Notification:
    """A real notification that went dead against `server` (schedule: one try)."""
    source = SourceFactory()
    config = make_config(source, url=server.url("/returns"))
    FieldMapping.objects.create(
        config=config, position=0, target="event", value="{{ event.id }}"
    )
    delivery = DeliveryEventFactory(buyer=buyer, lead__source=source)
    result = feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return"},
        channel=Feedback.Channel.API,
    )
    assert result.feedback is not None
    assert notifications_deliver_due() == 1
    notification = Notification.objects.get(feedback=result.feedback)
    assert notification.status == Status.DEAD
    return notification


# Pages ------------------------------------------------------------------------------


def test_the_list_shows_each_notification_with_its_feedback_and_status(
    staff_client,
):
    notification = make_notification(
        Status.RETRYING, reason="Could not connect in time. " * 10
    )
    event_id = notification.feedback.delivery.event_id

    response = staff_client.get(NOTIFICATIONS)

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [notification]
    page = response.content.decode()
    assert notification.public_id in page
    feedback_url = reverse(
        "admin:feedback_feedback_change", args=[notification.feedback_id]
    )
    assert f'<a href="{feedback_url}">{event_id}</a>' in page
    assert 'class="notification-status status-retrying"' in page
    assert "var(--message-warning-bg)" in page
    # The reason is cut in the list, whole on hover.
    assert f'title="{notification.reason}"' in page
    assert "Could not connect in time. Could not" in page
    assert "Dead letters: 0" in page


def test_the_change_page_shows_the_attempts_read_only(staff_client):
    notification = make_notification(Status.DEAD, attempts=2)

    response = staff_client.get(change_url(notification))

    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    page = response.content.decode()
    assert "https://returns.example/api?try=1" in page
    assert "https://returns.example/api?try=2" in page
    assert page.index("try=1") < page.index("try=2")  # ordered by number
    assert "1,234 ms" in page
    assert "Retry-After: 30" in page
    assert "&lt;html&gt;busy, try 2&lt;/html&gt;" in page  # escaped, in a <pre>
    assert '<details class="attempt-exchange">' in page
    assert (
        reverse("admin:sources_feedbackconfig_change", args=[notification.config_id])
        in page
    )
    assert 'name="_save"' not in page


def test_json_bodies_are_indented_in_the_attempt(staff_client):
    notification = make_notification()
    attempt = notification.attempts.get()
    attempt.response_body = '{"error": {"code": 42}}'
    attempt.save(update_fields=["response_body"])

    page = staff_client.get(change_url(notification)).content.decode()

    assert "{\n  &quot;error&quot;: {\n    &quot;code&quot;: 42\n  }\n}" in page


def test_a_notification_without_a_request_says_so(staff_client):
    notification = make_notification(reason="Mapping 'x': undefined")
    notification.attempts.update(request_method="", request_url="")

    page = staff_client.get(change_url(notification)).content.decode()

    assert "(not built)" in page


def test_filters_search_and_date_hierarchy(staff_client):
    dead = make_notification(Status.DEAD)
    succeeded = make_notification(Status.SUCCEEDED, reason="")
    other_kind = make_notification(
        Status.FAILED,
        config=make_config(SourceFactory(), kind="conversion"),
    )
    other_kind.kind = "conversion"
    other_kind.save(update_fields=["kind"])

    def found(query) -> set[int]:
        response = staff_client.get(NOTIFICATIONS, query)
        assert response.status_code == 200
        return {n.pk for n in response.context["cl"].result_list}

    assert found({"status__exact": "dead"}) == {dead.pk}
    assert found({"kind__exact": "conversion"}) == {other_kind.pk}
    assert found({"config__id__exact": succeeded.config_id}) == {succeeded.pk}
    assert found({"source__id__exact": dead.source_id}) == {dead.pk}
    assert found({"created_at__year": timezone.now().year}) == {
        dead.pk,
        succeeded.pk,
        other_kind.pk,
    }
    assert found({"q": dead.public_id}) == {dead.pk}
    assert found({"q": succeeded.feedback.delivery.event_id}) == {succeeded.pk}
    assert found({"q": dead.public_id[:10]}) == set()  # exact only


def test_notifications_cannot_be_added_changed_or_deleted(staff_client):
    notification = make_notification()

    assert (
        staff_client.get(reverse("admin:feedback_notification_add")).status_code == 403
    )
    assert (
        staff_client.get(
            reverse("admin:feedback_notification_delete", args=[notification.pk])
        ).status_code
        == 403
    )
    assert staff_client.post(change_url(notification), {}).status_code == 403
    listing = staff_client.get(NOTIFICATIONS).content.decode()
    assert "delete_selected" not in listing
    assert 'value="resend"' in listing


def test_the_feedback_page_lists_its_notifications(staff_client):
    notification = make_notification(Status.FAILED, reason="Lead already returned")

    page = staff_client.get(
        reverse("admin:feedback_feedback_change", args=[notification.feedback_id])
    ).content.decode()

    assert notification.public_id in page
    assert "Lead already returned" in page
    assert "status-failed" in page


# No query per row ---------------------------------------------------------------


def count_queries(client, url: str, rows: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == rows
    return len(queries)


@pytest.mark.parametrize("url", [NOTIFICATIONS, DEAD_LETTERS], ids=["all", "dead"])
def test_changelist_queries_do_not_grow_with_rows(staff_client, url):
    # Every row has its own source and config, so the filters grow too.
    staff_client.get(url)  # warm caches (content types, session) first
    for _ in range(5):
        make_notification(Status.DEAD)
    with_5 = count_queries(staff_client, url, 5)

    for _ in range(45):
        make_notification(Status.DEAD)
    with_50 = count_queries(staff_client, url, 50)

    assert with_50 == with_5


def test_change_page_queries_do_not_grow_with_attempts(staff_client):
    one = make_notification(attempts=1)
    ten = make_notification(attempts=10)
    staff_client.get(change_url(one))

    with CaptureQueriesContext(connection) as for_one:
        staff_client.get(change_url(one))
    with CaptureQueriesContext(connection) as for_ten:
        staff_client.get(change_url(ten))

    assert len(for_ten) == len(for_one)


# Resending --------------------------------------------------------------------------


def test_the_resend_action_resets_dead_and_failed_rows(staff_client):
    dead = make_notification(Status.DEAD)
    failed = make_notification(Status.FAILED, reason="Lead already returned")
    batched = make_notification(Status.BATCHED, reason="")

    response = staff_client.post(
        NOTIFICATIONS,
        {
            "action": "resend",
            "_selected_action": [dead.pk, failed.pk, batched.pk],
        },
        follow=True,
    )

    assert response.status_code == 200
    for notification in (dead, failed):
        notification.refresh_from_db()
        assert notification.status == Status.PENDING
        assert notification.next_attempt_at is not None
        assert notification.finished_at is None
        assert notification.schedule_tries == 0
        assert notification.attempt_count == 1  # the history stays
    batched.refresh_from_db()
    assert batched.status == Status.BATCHED
    assert messages_of(response) == [
        (SUCCESS, "Resent 2 notifications: they are queued for sending."),
        (
            WARNING,
            "1 notification was not resent: it is in a batch file or being sent "
            "right now.",
        ),
    ]


def test_the_resend_button_sends_it_again(staff_client, buyer, receiver, settings):
    # The engine is driven by hand: the return's row waits unclaimed for it.
    settings.LEADBACK_QUEUE_ON_COMMIT = False
    notification = dead_notification_from_the_engine(buyer, receiver)
    receiver.reply = Reply(200, b'{"ok": true}')
    page = staff_client.get(change_url(notification)).content.decode()
    assert f'action="{resend_url(notification)}"' in page
    assert "csrfmiddlewaretoken" in page

    response = staff_client.post(resend_url(notification), follow=True)

    assert response.redirect_chain == [(change_url(notification), 302)]
    assert messages_of(response) == [
        (SUCCESS, "Resent 1 notification: it is queued for sending.")
    ]
    notification.refresh_from_db()
    assert notification.status == Status.PENDING
    assert len(receiver.requests) == 1  # nothing sent until a worker takes it

    assert notifications_deliver_due() == 1

    notification.refresh_from_db()
    assert notification.status == Status.SUCCEEDED
    assert notification.attempt_count == 2
    assert len(receiver.requests) == 2
    assert receiver.last.header("webhook-id") == notification.public_id


def test_a_resend_is_queued_once_it_commits(
    staff_client, monkeypatch, django_capture_on_commit_callbacks
):
    notification = make_notification(Status.DEAD)
    queued: list[list[int]] = []
    monkeypatch.setattr(
        feedback_admin,
        "notifications_enqueue",
        lambda claims: queued.append([c.notification_id for c in claims]) or 1,
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        staff_client.post(resend_url(notification))

    assert len(callbacks) == 1
    assert queued == [[notification.pk]]
    notification.refresh_from_db()
    assert notification.lease_expires_at is not None  # claimed for the queue


def test_a_resend_survives_a_queue_that_fails(
    staff_client, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    notification = make_notification(Status.DEAD)

    def broken(**kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(feedback_admin, "notifications_claim_due", broken)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(resend_url(notification))

    assert response.status_code == 302
    notification.refresh_from_db()
    assert notification.status == Status.PENDING  # the sweeper will take it
    assert "could not queue resent notifications" in caplog.text


def test_the_button_is_for_post_only(staff_client):
    notification = make_notification(Status.DEAD)

    response = staff_client.get(resend_url(notification))

    assert response.status_code == 405
    notification.refresh_from_db()
    assert notification.status == Status.DEAD


def test_a_notification_being_sent_has_no_button_and_is_not_resent(staff_client):
    notification = make_notification(Status.SENDING)
    Notification.objects.filter(pk=notification.pk).update(
        lease_expires_at=timezone.now() + timedelta(minutes=5)
    )

    page = staff_client.get(change_url(notification)).content.decode()
    response = staff_client.post(resend_url(notification), follow=True)

    assert resend_url(notification) not in page
    assert messages_of(response) == [
        (
            WARNING,
            "1 notification was not resent: it is in a batch file or being sent "
            "right now.",
        )
    ]
    notification.refresh_from_db()
    assert notification.status == Status.SENDING


def test_staff_without_the_change_permission_only_look(viewer_client):
    notification = make_notification(Status.DEAD)

    listing = viewer_client.get(NOTIFICATIONS)
    page = viewer_client.get(change_url(notification))
    button = viewer_client.post(resend_url(notification))
    action = viewer_client.post(
        NOTIFICATIONS, {"action": "resend", "_selected_action": [notification.pk]}
    )

    assert listing.status_code == page.status_code == 200
    assert 'value="resend"' not in listing.content.decode()
    assert resend_url(notification) not in page.content.decode()
    assert button.status_code == 403
    assert action.status_code in (200, 302)
    notification.refresh_from_db()
    assert notification.status == Status.DEAD


@pytest.mark.parametrize("who", ["anonymous", "buyer user"])
def test_people_who_are_not_staff_cannot_reach_them(client, buyer_user, who):
    notification = make_notification(Status.DEAD)
    if who == "buyer user":
        client.force_login(buyer_user)
    login = reverse("admin:login")

    responses = [
        client.get(NOTIFICATIONS),
        client.get(DEAD_LETTERS),
        client.get(change_url(notification)),
        client.get(change_url(notification, dead=True)),
        client.post(resend_url(notification)),
        client.post(resend_url(notification, dead=True)),
        client.post(
            DEAD_LETTERS, {"action": "resend", "_selected_action": [notification.pk]}
        ),
    ]

    for response in responses:
        assert response.status_code == 302
        assert response["Location"].startswith(login)
    notification.refresh_from_db()
    assert notification.status == Status.DEAD


def test_the_resend_url_is_csrf_protected(client, staff_user):
    notification = make_notification(Status.DEAD)
    client.handler.enforce_csrf_checks = True
    client.force_login(staff_user)

    response = client.post(resend_url(notification))

    assert response.status_code == 403
    notification.refresh_from_db()
    assert notification.status == Status.DEAD


# Dead letters -----------------------------------------------------------------------


def test_dead_letters_lists_only_dead_notifications(staff_client):
    dead = [make_notification(Status.DEAD) for _ in range(2)]
    for status in (Status.FAILED, Status.RETRYING, Status.SUCCEEDED, Status.PENDING):
        make_notification(status)

    response = staff_client.get(DEAD_LETTERS)
    listing = staff_client.get(NOTIFICATIONS).content.decode()

    assert response.status_code == 200
    assert {n.pk for n in response.context["cl"].result_list} == {n.pk for n in dead}
    page = response.content.decode()
    assert "2 notifications ran out of retries." in page
    assert 'value="resend"' in page
    assert f'href="{DEAD_LETTERS}" class="dead-letters-link">Dead letters: 2<' in (
        listing
    )


def test_a_resent_dead_letter_leaves_the_dead_letters(staff_client):
    dead, kept = make_notification(Status.DEAD), make_notification(Status.DEAD)

    response = staff_client.post(
        DEAD_LETTERS, {"action": "resend", "_selected_action": [dead.pk]}, follow=True
    )

    assert (SUCCESS, "Resent 1 notification: it is queued for sending.") in (
        messages_of(response)
    )
    assert [n.pk for n in response.context["cl"].result_list] == [kept.pk]
    assert DeadNotification.objects.get(pk=dead.pk).status == Status.PENDING


def test_a_dead_letter_page_resends_and_goes_to_the_notification(staff_client):
    notification = make_notification(Status.DEAD)
    page = staff_client.get(change_url(notification, dead=True))
    assert page.status_code == 200
    assert resend_url(notification, dead=True) in page.content.decode()

    response = staff_client.post(resend_url(notification, dead=True))

    assert response.status_code == 302
    assert response["Location"] == change_url(notification)
    notification.refresh_from_db()
    assert notification.status == Status.PENDING


def test_a_notification_that_is_not_dead_is_no_dead_letter(staff_client):
    notification = make_notification(Status.FAILED)

    page = staff_client.get(change_url(notification, dead=True), follow=True)
    button = staff_client.post(resend_url(notification, dead=True))

    assert page.redirect_chain[-1][0] == reverse("admin:index")
    assert button.status_code == 404
    notification.refresh_from_db()
    assert notification.status == Status.FAILED


# Configs that Leadback switched off -----------------------------------------------

GONE = "HTTP 410 Gone from https://returns.example/api"


def config_change_url(config: FeedbackConfig) -> str:
    return reverse("admin:sources_feedbackconfig_change", args=[config.pk])


def switched_off_config() -> FeedbackConfig:
    return make_config(SourceFactory(), enabled=False, disabled_reason=GONE)


def config_form(config: FeedbackConfig, **overrides) -> dict[str, str]:
    data = {
        "source": str(config.source_id),
        "kind": config.kind,
        "method": config.method,
        "url": config.url,
        "http_method": config.http_method,
        "timeout_s": str(config.timeout_s),
        "headers": "{}",
        "auth_type": "none",
        "soap_version": "1.1",
        "outcome_on_match": "success",
        "mappings-TOTAL_FORMS": "0",
        "mappings-INITIAL_FORMS": "0",
        "mappings-MIN_NUM_FORMS": "0",
        "mappings-MAX_NUM_FORMS": "1000",
    }
    return data | overrides


def test_the_config_list_says_why_a_config_is_off(staff_client):
    off = switched_off_config()
    on = make_config(SourceFactory())

    response = staff_client.get(CONFIGS)

    assert response.status_code == 200
    assert "disabled because" in response.content.decode().lower()
    rows = {
        c.pk: response.context["cl"].model_admin.disabled_because(c)
        for c in response.context["cl"].result_list
    }
    assert rows == {off.pk: GONE, on.pk: None}
    assert GONE in response.content.decode()


def test_the_config_page_warns_when_leadback_switched_it_off(staff_client):
    config = switched_off_config()

    response = staff_client.get(config_change_url(config))

    assert response.status_code == 200
    [(level, text)] = messages_of(response)
    assert level == WARNING
    assert text.startswith(f"Leadback switched this config off: {GONE}")
    assert "tick “Enabled” and save" in text
    form = response.context["adminform"].form
    assert "disabled_reason" not in form.fields  # shown, not editable
    assert GONE in response.content.decode()


def test_a_config_turned_off_by_hand_has_no_warning(staff_client):
    config = make_config(SourceFactory(), enabled=False)

    response = staff_client.get(config_change_url(config))

    assert messages_of(response) == []
    assert "disabled_reason" not in response.content.decode()


def test_enabling_the_config_again_clears_the_reason(staff_client):
    config = switched_off_config()

    response = staff_client.post(
        config_change_url(config), config_form(config, enabled="on"), follow=True
    )

    assert response.status_code == 200
    config.refresh_from_db()
    assert config.enabled
    assert config.disabled_reason == ""
    assert any(
        "enabled again and its disabled reason cleared" in text
        for _, text in messages_of(response)
    )


def test_saving_it_still_off_keeps_the_reason(staff_client):
    config = switched_off_config()

    response = staff_client.post(
        config_change_url(config), config_form(config, timeout_s="20")
    )

    assert response.status_code == 302
    config.refresh_from_db()
    assert (config.enabled, config.timeout_s) == (False, 20.0)
    assert config.disabled_reason == GONE
