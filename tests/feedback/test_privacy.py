"""Erasure by API, command and admin, erasure notices, and retention
(DESIGN §12). The whole-database check is in test_privacy_erasure.py."""

import json
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import example, given
from hypothesis import strategies as st

from feedback.forwarding.models import BatchRun, Notification, NotificationAttempt
from feedback.imports.models import FeedbackImport
from feedback.imports.selectors import feedback_import_refused_csv
from feedback.models import Lead
from feedback.privacy.models import Erasure, ErasureNotice
from feedback.privacy.notices import erasure_notices_send_due
from feedback.privacy.services import (
    ErasureInputError,
    erasure_request_clean,
    person_erase,
    retention_apply,
    retention_due,
)
from feedback.suppression.digests import sha256_of
from feedback.webhooks.models import WebhookAttempt, WebhookMessage
from sources.models import FeedbackConfig
from tests.factories import (
    BuyerFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    LeadFactory,
    SourceFactory,
    UserFactory,
)
from tests.feedback.test_hostile_input import hostile, post_json, values
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.django_db

URL = "/api/v1/privacy/erasures"


def _lead(source=None, **data):
    values = {
        "first_name": "Ada",
        "last_name": "Lindqvist",
        "email": "ada.lindqvist@example.com",
        "phone_1": "512-555-0101",
    } | data
    return LeadFactory(
        data=values,
        email_normalized=values["email"].lower(),
        phone_normalized="5125550101",
        **({"source": source} if source else {}),
    )


# The service's input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "Give an email, a phone or a lead id to erase."),
        ({"email": "  ", "phone": ""}, "Give an email, a phone or a lead id"),
        ({"email": "not-an-email"}, "email: not a valid email address."),
        ({"email": "a@b\x00.com"}, "email: "),
        ({"phone": "12-34"}, "phone: needs at least 7 digits."),
        ({"lead_id": "x" * 300}, "lead_id: at most 254 characters."),
        ({"lead_id": 12}, "lead_id: must be a string."),
    ],
)
def test_bad_input_is_refused_naming_the_problem(given, message):
    with pytest.raises(ErasureInputError, match=message.replace("(", r"\(")):
        erasure_request_clean(**given)


def test_identifiers_are_normalised():
    request = erasure_request_clean(
        email=" Ada@Example.COM ", phone="+1 (512) 555-0101", lead_id=" L-1 "
    )
    assert (request.email, request.phone, request.lead_id) == (
        "ada@example.com",
        "5125550101",
        "L-1",
    )


# API ------------------------------------------------------------------------------


def test_the_api_erases_by_lead_id_and_answers_with_the_receipt(integration_client):
    lead = _lead()
    DeliveryEventFactory(lead=lead)

    response = integration_client.post(URL, {"lead_id": lead.public_id}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("era_")
    assert body["leads"] == 1
    assert body["counts"]["leads"] == 1
    assert body["notices"] == 0
    lead.refresh_from_db()
    assert (lead.data, lead.email_normalized, lead.phone_normalized) == ({}, "", "")
    receipt = Erasure.objects.get(public_id=body["id"])
    assert receipt.lead_id_sha256 == sha256_of(lead.public_id)
    assert receipt.email_sha256 == ""
    assert receipt.api_key is not None


def test_the_api_answers_an_unknown_person_with_an_empty_receipt(integration_client):
    response = integration_client.post(
        URL, {"email": "nobody@example.com"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["leads"] == 0
    assert response.json()["counts"] == {}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "Give an email, a phone or a lead id to erase."),
        ({"email": "ada@"}, "email: not a valid email address."),
        ({"email": "ada\u0000@example.com"}, "NUL"),
        ({"phone": "55"}, "phone: needs at least 7 digits."),
        ({"suppression_list": "nope", "phone": "5125550101"}, "no list is called"),
        ({"email": ["a@b.com"]}, "email: Not a valid string."),
    ],
)
def test_the_api_refuses_bad_input_with_a_400_naming_it(
    integration_client, body, detail
):
    response = integration_client.post(
        URL, json.dumps(body), content_type="application/json"
    )
    assert 400 <= response.status_code < 500, response.content
    assert detail.lower() in response.content.decode().lower()
    assert not Erasure.objects.exists()


def test_a_buyer_key_cannot_erase(buyer_client):
    lead = _lead()
    response = buyer_client.post(URL, {"lead_id": lead.public_id}, format="json")
    assert response.status_code == 403
    lead.refresh_from_db()
    assert lead.data["email"] == "ada.lindqvist@example.com"


# The erasure itself ----------------------------------------------------------------


def test_only_the_persons_leads_and_rows_change():
    lead = _lead()
    other = LeadFactory()
    mine = FeedbackFactory(delivery__lead=lead, note="Called Ada Lindqvist")
    theirs = FeedbackFactory(delivery__lead=other, note="Called Ada Lindqvist")
    notification = Notification.objects.create(
        feedback=mine,
        source=mine.source,
        kind=mine.kind,
        lead_delivered_at=mine.delivery.delivered_at,
    )
    NotificationAttempt.objects.create(
        notification=notification,
        number=1,
        started_at=mine.received_at,
        request_method="GET",
        request_url="https://source.example/r?email=ada.lindqvist%40example.com",
        request_headers={"X-Lead": "Ada"},
        request_body="email=ada.lindqvist%40example.com",
        response_body='{"ok": true}',
        outcome="success",
    )

    erasure = person_erase(
        request=erasure_request_clean(phone="(512) 555 0101"), via="command"
    )

    assert erasure.leads == 1
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.note == "Called [erased] [erased]"
    assert theirs.note == "Called Ada Lindqvist"  # another lead: left alone
    attempt = NotificationAttempt.objects.get()
    assert attempt.request_url == "https://source.example/r"
    assert (attempt.request_body, attempt.response_body) == ("", "")
    assert attempt.request_headers == {}
    other.refresh_from_db()
    assert other.data["email"]


def test_webhook_bodies_naming_the_person_are_scrubbed():
    _lead()
    message = WebhookMessage.objects.create(
        event="return.decided",
        body=json.dumps({"decision_reason": "ada.lindqvist@example.com asked"}),
    )
    untouched = WebhookMessage.objects.create(event="source.paused", body="{}")
    WebhookAttempt.objects.create(
        message=message,
        number=1,
        started_at=message.created_at,
        request_url="https://hooks.example/",
        response_body="echo: Lindqvist",
        outcome="success",
    )

    person_erase(
        request=erasure_request_clean(email="ada.lindqvist@example.com"),
        via="command",
    )

    message.refresh_from_db()
    assert "lindqvist" not in message.body.lower()
    assert message.payload == {"decision_reason": "[erased] asked"}
    assert WebhookAttempt.objects.get().response_body == "echo: [erased]"
    untouched.refresh_from_db()
    assert untouched.body == "{}"


# Command ---------------------------------------------------------------------------


def test_the_command_erases_and_prints_the_receipt():
    lead = _lead()
    out = StringIO()

    call_command("erase_person", "--email", "ADA.Lindqvist@example.com", stdout=out)

    assert "1 lead(s) erased" in out.getvalue()
    assert "leads: 1" in out.getvalue()
    lead.refresh_from_db()
    assert lead.data == {}
    assert Erasure.objects.get().via == "command"
    assert Erasure.objects.get().requested_by.startswith("command")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give an email, a phone or a lead id to erase."),
        (["--email", "nope"], "email: not a valid email address."),
        (["--lead-id", "a\x00b"], "lead_id: "),
    ],
)
def test_the_command_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("erase_person", *args)
    assert not Erasure.objects.exists()


# Admin -----------------------------------------------------------------------------


def test_the_admin_form_erases_and_shows_the_receipt(client, staff_user):
    lead = _lead()
    client.force_login(staff_user)
    url = reverse("admin:feedback_erasure_add")
    assert "Erase a person" in client.get(url).content.decode()

    response = client.post(url, {"lead_id": lead.public_id, "confirm": "on"})

    erasure = Erasure.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:feedback_erasure_change", args=[erasure.pk]
    )
    page = client.get(response["Location"]).content.decode()
    assert erasure.public_id in page
    assert "leads: 1" in page
    assert (erasure.via, erasure.user, erasure.requested_by) == (
        "admin",
        staff_user,
        staff_user.username,
    )
    lead.refresh_from_db()
    assert lead.data == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"confirm": "on"}, "Give an email, a phone or a lead id to erase."),
        ({"email": "x@", "confirm": "on"}, "email: not a valid email address."),
        ({"phone": "5125550101"}, "This field is required."),
        ({"lead_id": "a\x00", "confirm": "on"}, "Null characters are not allowed."),
    ],
)
def test_the_admin_form_names_what_is_wrong(client, staff_user, data, message):
    client.force_login(staff_user)
    response = client.post(reverse("admin:feedback_erasure_add"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Erasure.objects.exists()


def test_staff_without_the_permission_cannot_erase(client):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_erasure"))
    client.force_login(user)
    url = reverse("admin:feedback_erasure_add")
    assert client.get(url).status_code == 403
    assert client.post(url, {"lead_id": "x", "confirm": "on"}).status_code == 403
    assert client.get(reverse("admin:feedback_erasure_changelist")).status_code == 200


# Erasure notices -------------------------------------------------------------------


@pytest.fixture
def outbound(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = [0, 60]
    settings.LEADBACK_RETRY_JITTER = 0


def _erase_config(source, url, **fields):
    return FeedbackConfig.objects.create(
        source=source,
        kind="return",
        method="json",
        url=url,
        on_erase={
            "url": url + "/erasures",
            "method": "json",
            "mappings": {
                "lead_id": "{{ lead.id }}",
                "event": "{{ event.id }}",
                "erasure": "{{ erasure.id }}",
            },
        },
        **fields,
    )


def test_a_source_with_an_erasure_mapping_is_told(outbound):
    source = SourceFactory()
    lead = _lead(source=source)
    event = DeliveryEventFactory(lead=lead)
    SourceFactory()  # another source, no notice
    with RecordingServer(Reply(200, b"ok")) as server:
        _erase_config(source, server.url("/lc"))
        FeedbackConfig.objects.create(
            source=source, kind="conversion", url=server.url()
        )

        erasure = person_erase(
            request=erasure_request_clean(lead_id=lead.public_id), via="command"
        )
        assert erasure.notices == 1
        assert erasure_notices_send_due() == 1
        sent = server.requests[-1]
    assert sent.path == "/lc/erasures"
    assert json.loads(sent.body) == {
        "lead_id": lead.public_id,
        "event": event.event_id,
        "erasure": erasure.public_id,
    }
    assert b"lindqvist" not in sent.body.lower()
    notice = ErasureNotice.objects.get()
    assert (notice.status, notice.response_status, notice.attempt_count) == (
        "succeeded",
        200,
        1,
    )


def test_an_erasure_notice_is_retried_then_refused(outbound):
    lead = _lead()
    with RecordingServer(Reply(503, b"busy")) as server:
        _erase_config(lead.source, server.url(), outcome_search_term="ok")
        person_erase(request=erasure_request_clean(lead_id=lead.public_id), via="api")
        erasure_notices_send_due()
        notice = ErasureNotice.objects.get()
        assert notice.status == "retrying"
        assert notice.next_attempt_at is not None
        assert erasure_notices_send_due() == 0  # not due for a minute
    with RecordingServer(Reply(200, b"no such lead")) as server:
        FeedbackConfig.objects.filter(pk=notice.config_id).update(
            on_erase={
                "url": server.url(),
                "mappings": {"lead_id": "{{ lead.id }}"},
            }
        )
        with time_machine.travel(notice.next_attempt_at + timedelta(seconds=1)):
            assert erasure_notices_send_due() == 1
    notice.refresh_from_db()
    assert notice.status == "failed"
    assert notice.attempt_count == 2


# Retention -------------------------------------------------------------------------

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_rows(settings):
    """One of each kind of row, written at T0."""
    settings.LEADBACK_RETAIN_ATTEMPT_BODIES_DAYS = 30
    settings.LEADBACK_RETAIN_IMPORT_FILES_DAYS = 30
    settings.LEADBACK_RETAIN_BATCH_FILES_DAYS = 30
    settings.LEADBACK_RETAIN_LEAD_DATA_DAYS = 60
    with time_machine.travel(T0, tick=False):
        lead = _lead()
        delivery = DeliveryEventFactory(lead=lead, delivered_at=T0)
        feedback = FeedbackFactory(delivery=delivery)
        notification = Notification.objects.create(
            feedback=feedback,
            source=feedback.source,
            kind=feedback.kind,
            lead_delivered_at=T0,
        )
        NotificationAttempt.objects.create(
            notification=notification,
            number=1,
            started_at=T0,
            request_method="POST",
            request_url="https://source.example/r",
            request_body='{"email": "ada.lindqvist@example.com"}',
            response_body="ok",
            outcome="success",
        )
        feedback_import = FeedbackImport.objects.create(
            buyer=feedback.buyer,
            filename="f.csv",
            file_sha256="0" * 64,
            content=b"event_id,type,reason\r\nabc,return,x\r\n",
            status=FeedbackImport.Status.DONE,
            finished_at=T0,
        )
        run = BatchRun.objects.create(
            source=feedback.source,
            period_start=T0 - timedelta(days=1),
            period_end=T0,
            status=BatchRun.Status.SENT,
            content=b"event_id,email\r\nabc,ada.lindqvist@example.com\r\n",
        )
    return lead, feedback_import, run


def test_nothing_is_due_before_its_time(old_rows):
    with time_machine.travel(T0 + timedelta(days=29)):
        assert retention_due() == {
            "attempt_bodies": 0,
            "import_files": 0,
            "batch_files": 0,
            "lead_data": 0,
            "audit_entries": 0,
        }


def test_the_dry_run_prints_counts_and_changes_nothing(old_rows):
    _, _, run = old_rows
    out = StringIO()
    with time_machine.travel(T0 + timedelta(days=31)):
        call_command("apply_retention", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "Would clear:",
        "  attempt_bodies: 1",
        "  import_files: 1",
        "  batch_files: 1",
        "  lead_data: 0",
        "  audit_entries: 0",
    ]
    assert NotificationAttempt.objects.get().request_body
    run.refresh_from_db()
    assert run.content is not None


def test_retention_clears_each_kind_when_its_days_have_passed(old_rows):
    lead, feedback_import, run = old_rows
    with time_machine.travel(T0 + timedelta(days=31)):
        out = StringIO()
        call_command("apply_retention", stdout=out)
        assert "  attempt_bodies: 1" in out.getvalue()
        assert retention_due()["attempt_bodies"] == 0
    attempt = NotificationAttempt.objects.get()
    assert (attempt.request_body, attempt.response_body) == ("", "")
    assert attempt.outcome == "success"
    feedback_import.refresh_from_db()
    assert bytes(feedback_import.content) == b""
    # The refused-rows report still answers, with what is left.
    assert feedback_import_refused_csv(feedback_import=feedback_import).startswith(
        "row,refusal_reason"
    )
    run.refresh_from_db()
    assert run.content is None
    assert run.status == BatchRun.Status.SENT
    lead.refresh_from_db()
    assert lead.data["email"]  # 60 days for lead data

    with time_machine.travel(T0 + timedelta(days=61)):
        assert retention_apply()["lead_data"] == 1
        assert retention_apply()["lead_data"] == 0
    lead.refresh_from_db()
    assert (lead.data, lead.email_normalized) == ({}, "")
    assert lead.deliveries.count() == 1


def test_a_later_delivery_keeps_the_lead(old_rows, settings):
    lead, _, _ = old_rows
    DeliveryEventFactory(lead=lead, delivered_at=T0 + timedelta(days=50))
    with time_machine.travel(T0 + timedelta(days=61)):
        assert retention_due()["lead_data"] == 0
    settings.LEADBACK_RETAIN_LEAD_DATA_DAYS = 0  # 0 keeps it for ever
    with time_machine.travel(T0 + timedelta(days=1000)):
        assert retention_due()["lead_data"] == 0


def test_beat_runs_retention_every_hour(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["apply-retention"]
    assert entry["task"] == "feedback.tasks.apply_retention_task"
    from config.celery import app

    app.loader.import_default_modules()
    assert "feedback.tasks.apply_retention_task" in app.tasks
    assert "feedback.tasks.send_erasure_notices_task" in app.tasks


# The real worker -------------------------------------------------------------------


@pytest.fixture
def outbound_to_localhost(monkeypatch, settings):
    # Read by the worker process (its environment) and by this one.
    monkeypatch.setenv("LEADBACK_OUTBOUND_ALLOWLIST", "127.0.0.1/32")
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_the_worker_sends_the_erasure_notice_queued_on_commit(
    outbound_to_localhost, celery_worker_process
):
    buyer = BuyerFactory()
    lead = _lead()
    DeliveryEventFactory(lead=lead, buyer=buyer)
    with RecordingServer(Reply(200, b"ok")) as server:
        _erase_config(lead.source, server.url())
        person_erase(
            request=erasure_request_clean(email="ada.lindqvist@example.com"), via="api"
        )
        deadline = time.monotonic() + 30
        while not server.requests:
            assert time.monotonic() < deadline, "the worker sent no notice"
            time.sleep(0.1)
        while ErasureNotice.objects.get().status != "succeeded":
            assert time.monotonic() < deadline, ErasureNotice.objects.get().reason
            time.sleep(0.1)
    assert json.loads(server.requests[0].body)["lead_id"] == lead.public_id
    assert Lead.objects.get(pk=lead.pk).data == {}


@pytest.mark.parametrize(
    ("on_erase", "problem"),
    [
        (None, None),
        ({"url": "https://s.example/e", "mappings": {"id": "{{ lead.id }}"}}, None),
        ([], "on_erase must be an object."),
        ({"url": "ftp://s.example", "mappings": {"a": "b"}}, "http or https URL"),
        (
            {"url": "https://s.example", "method": "soap", "mappings": {"a": "b"}},
            "json",
        ),
        ({"url": "https://s.example", "mappings": {}}, "field: template"),
        ({"url": "https://s.example", "mappings": {"a": 1}}, "templates (strings)"),
    ],
)
def test_a_config_with_a_broken_erasure_mapping_is_refused(on_erase, problem):
    from sources.services import feedback_config_problems

    config = FeedbackConfig(
        source=SourceFactory(),
        kind="return",
        method="json",
        url="https://s.example/r",
        on_erase=on_erase,
    )
    found = feedback_config_problems(config).get("on_erase", [])
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1
        assert problem in found[0]


def test_many_terms_are_searched_a_hundred_at_a_time():
    from feedback.privacy.services import Scrubber

    terms = {f"person{n:04d}@example.com" for n in range(1500)}
    hit = WebhookMessage.objects.create(
        event="return.decided", body="person1499@example.com"
    )
    WebhookMessage.objects.create(event="return.decided", body="someone@example.com")

    assert Scrubber(terms).containing(WebhookMessage, "body", "reason") == [hit.pk]


@hostile
@given(
    body=st.one_of(
        values,
        st.fixed_dictionaries(
            {},
            optional={
                "email": values,
                "phone": values,
                "lead_id": values,
                "suppression_list": values,
            },
        ),
    )
)
@example(body={"email": "a\x00@b.com"})
@example(body={"phone": "\ud800"})
@example(body={"lead_id": "x" * 10_000})
def test_hostile_bodies_get_a_4xx_or_a_receipt_never_a_5xx(integration_client, body):
    response = post_json(integration_client, URL, body)
    assert response.status_code in (201, 400, 415, 422), response.content
