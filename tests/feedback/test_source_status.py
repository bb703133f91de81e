"""Source status (DESIGN §11): the pause and resume services with their audit
rows, the API for integration keys, and the admin's buttons, actions and badge."""

import pytest
from django.contrib import admin as django_admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from feedback.sourcestatus.admin import SourceStatusAdmin
from feedback.sourcestatus.models import SourceStatusChange
from feedback.sourcestatus.services import source_pause, source_resume
from sources.models import Source
from tests.factories import SourceFactory, UserFactory

pytestmark = pytest.mark.django_db

Action = SourceStatusChange.Action


@pytest.fixture
def source():
    return SourceFactory(slug="bluesky-leads", name="Bluesky Leads")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Services -------------------------------------------------------------------


def test_pause_then_resume_write_the_status_and_an_audit_row_each(source):
    user = UserFactory(username="ops", is_staff=True)

    assert source_pause(source=source, reason="Returns at 30%", actor=user, via="admin")
    source.refresh_from_db()
    assert source.status == Source.Status.PAUSED
    assert source.paused_reason == "Returns at 30%"
    assert source.paused_at is not None

    assert source_resume(source=source, actor=None, via="monitor:bluesky-returns")
    source.refresh_from_db()
    assert (source.status, source.paused_reason, source.paused_at) == (
        Source.Status.ACTIVE,
        "",
        None,
    )
    changes = list(
        SourceStatusChange.objects.filter(source=source).order_by("created_at", "pk")
    )
    assert [(c.action, c.via, c.user, c.reason) for c in changes] == [
        (Action.PAUSED, "admin", user, "Returns at 30%"),
        (Action.RESUMED, "monitor:bluesky-returns", None, ""),
    ]


@pytest.mark.parametrize(
    ("paused_first", "call", "expected"),
    [
        (True, "pause", False),  # paused already: nothing to do
        (False, "pause", True),
        (True, "resume", True),
        (False, "resume", False),  # active already: nothing to do
    ],
)
def test_a_change_to_the_status_it_has_is_refused_without_a_row(
    source, paused_first, call, expected
):
    if paused_first:
        source_pause(source=source, reason="first", actor=None, via="api")
    before = SourceStatusChange.objects.count()
    if call == "pause":
        changed = source_pause(source=source, reason="second", actor=None, via="api")
    else:
        changed = source_resume(source=source, actor=None, via="api")
    assert changed is expected
    assert SourceStatusChange.objects.count() == before + (1 if expected else 0)
    source.refresh_from_db()
    if paused_first and call == "pause":
        assert source.paused_reason == "first"  # the first pause's reason stays


def test_the_callers_instance_shows_the_new_status(source):
    stale = Source.objects.get(pk=source.pk)
    source_pause(source=source, reason="why", actor=None, via="api")
    assert source.status == Source.Status.PAUSED
    # A stale instance is read again under the lock: no second pause.
    assert source_pause(source=stale, reason="again", actor=None, via="api") is False
    assert stale.status == Source.Status.PAUSED


# API ------------------------------------------------------------------------


def test_the_api_reads_an_active_source(integration_client, source):
    response = integration_client.get("/api/v1/sources/bluesky-leads")
    assert response.status_code == 200
    assert response.json() == {
        "slug": "bluesky-leads",
        "name": "Bluesky Leads",
        "status": "active",
        "paused_reason": None,
        "paused_at": None,
    }


def test_the_api_pauses_and_resumes_with_audit_rows(
    integration_client, integration_key, source
):
    response = integration_client.post(
        "/api/v1/sources/bluesky-leads/pause",
        {"reason": "Return rate above 15%"},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "paused"
    assert body["paused_reason"] == "Return rate above 15%"
    assert body["paused_at"]
    assert integration_client.get("/api/v1/sources/bluesky-leads").json() == body

    # Pausing again changes nothing and answers the status as it is.
    again = integration_client.post(
        "/api/v1/sources/bluesky-leads/pause", {"reason": "other"}, format="json"
    )
    assert again.status_code == 200
    assert again.json() == body

    resumed = integration_client.post("/api/v1/sources/bluesky-leads/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "active"
    assert resumed.json()["paused_reason"] is None

    changes = SourceStatusChange.objects.order_by("created_at", "pk")
    assert [(c.action, c.via, c.api_key_id) for c in changes] == [
        (Action.PAUSED, "api", integration_key[0].pk),
        (Action.RESUMED, "api", integration_key[0].pk),
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "reason", "This field is required."),
        ({"reason": ""}, "reason", "This field may not be blank."),
        ({"reason": "x" * 501}, "reason", "Ensure this field has no more than 500"),
        ({"reason": ["a"]}, "reason", "Not a valid string."),
    ],
)
def test_a_pause_without_a_good_reason_is_400_naming_the_field(
    integration_client, source, body, field, message
):
    response = integration_client.post(
        "/api/v1/sources/bluesky-leads/pause", body, format="json"
    )
    assert response.status_code == 400
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert problem["errors"][0]["message"].startswith(message)
    source.refresh_from_db()
    assert source.status == Source.Status.ACTIVE


def test_text_the_database_cannot_store_is_refused_before_the_view(
    integration_client, source
):
    response = integration_client.post(
        "/api/v1/sources/bluesky-leads/pause",
        data=b'{"reason": "bad \\u0000 text"}',
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500
    assert "reason" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/sources/nowhere"),
        ("post", "/api/v1/sources/nowhere/pause"),
        ("post", "/api/v1/sources/nowhere/resume"),
    ],
)
def test_an_unknown_source_is_404(integration_client, method, path):
    kwargs = {"data": {"reason": "r"}, "format": "json"} if method == "post" else {}
    response = getattr(integration_client, method)(path, **kwargs)
    assert response.status_code == 404
    assert response.json()["detail"] == "Unknown source."


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/sources/bluesky-leads"),
        ("post", "/api/v1/sources/bluesky-leads/pause"),
        ("post", "/api/v1/sources/bluesky-leads/resume"),
    ],
)
def test_buyer_keys_and_anonymous_callers_are_refused(
    buyer_client, client, source, method, path
):
    kwargs = {"data": {"reason": "r"}, "format": "json"} if method == "post" else {}
    assert getattr(buyer_client, method)(path, **kwargs).status_code == 403
    assert getattr(client, method)(path).status_code in (401, 403)
    source.refresh_from_db()
    assert source.status == Source.Status.ACTIVE


# Admin ----------------------------------------------------------------------


def test_the_source_admin_is_the_one_with_status(source):
    assert isinstance(django_admin.site._registry[Source], SourceStatusAdmin)


def test_the_source_list_shows_a_paused_badge_without_a_query_per_row(
    client, staff_user
):
    for index in range(3):
        paused = SourceFactory(slug=f"paused-{index}", name=f"Paused {index}")
        source_pause(source=paused, reason=f"why {index}", actor=None, via="api")
    SourceFactory(slug="active", name="Active one")
    client.force_login(staff_user)
    url = reverse("admin:sources_source_changelist")
    with CaptureQueriesContext(connection) as few:
        response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="source-paused-badge"') == 3
    assert 'title="why 0"' in html

    for index in range(3, 8):
        SourceFactory(slug=f"more-{index}")
    with CaptureQueriesContext(connection) as more:
        client.get(url)
    assert len(more) == len(few)

    only_paused = client.get(url, {"status__exact": "paused"}).content.decode()
    assert "Paused 0" in only_paused
    assert "Active one" not in only_paused


def test_the_pause_button_asks_for_a_reason_then_pauses(client, staff_user, source):
    client.force_login(staff_user)
    change = reverse("admin:sources_source_change", args=[source.pk])
    page = client.get(change).content.decode()
    pause_url = reverse("admin:sources_source_pause", args=[source.pk])
    assert pause_url in page
    assert "Pause source" in page

    form = client.get(pause_url)
    assert form.status_code == 200
    assert "Reason" in form.content.decode()

    missing = client.post(pause_url, {"reason": ""})
    assert missing.status_code == 200
    assert "This field is required." in missing.content.decode()
    source.refresh_from_db()
    assert source.status == Source.Status.ACTIVE

    done = client.post(pause_url, {"reason": "Too many returns"}, follow=True)
    assert "1 source paused." in done.content.decode()
    source.refresh_from_db()
    assert source.status == Source.Status.PAUSED
    change_page = client.get(change).content.decode()
    assert "Resume source" in change_page
    assert "Too many returns" in change_page
    assert "paused via admin by admin" in change_page

    resume_url = reverse("admin:sources_source_resume", args=[source.pk])
    client.post(resume_url)
    source.refresh_from_db()
    assert source.status == Source.Status.ACTIVE
    row = SourceStatusChange.objects.latest("pk")
    assert (row.action, row.via, row.user) == (Action.RESUMED, "admin", staff_user)


def test_list_actions_pause_and_resume_several_sources(client, staff_user):
    first = SourceFactory(slug="first")
    second = SourceFactory(slug="second")
    source_pause(source=second, reason="earlier", actor=None, via="api")
    client.force_login(staff_user)
    url = reverse("admin:sources_source_changelist")
    ids = [str(first.pk), str(second.pk)]

    confirm = client.post(url, {"action": "pause_selected", "_selected_action": ids})
    assert confirm.status_code == 200
    assert "paused already" in confirm.content.decode()

    done = client.post(
        url,
        {
            "action": "pause_selected",
            "_selected_action": ids,
            "post": "yes",
            "reason": "Quality review",
        },
        follow=True,
    )
    text = done.content.decode()
    assert "1 source paused. 1 paused already, left as they were." in text
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.paused_reason == "Quality review"
    assert second.paused_reason == "earlier"

    client.post(
        url, {"action": "resume_selected", "_selected_action": ids, "post": "yes"}
    )
    assert set(Source.objects.values_list("status", flat=True)) == {"active"}


def test_staff_without_change_permission_cannot_pause(client, source):
    viewer = UserFactory(username="viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_source"))
    client.force_login(viewer)
    response = client.post(
        reverse("admin:sources_source_pause", args=[source.pk]), {"reason": "x"}
    )
    assert response.status_code == 403
    source.refresh_from_db()
    assert source.status == Source.Status.ACTIVE


def test_a_paused_source_still_receives_feedback(buyer_client, buyer, source):
    from tests.factories import DeliveryEventFactory

    delivery = DeliveryEventFactory(buyer=buyer, source=source)
    source_pause(source=source, reason="paused", actor=None, via="api")
    response = buyer_client.post(
        "/api/v1/feedback",
        {"event_id": delivery.event_id, "type": "conversion"},
        format="json",
    )
    assert response.status_code in (200, 201), response.content
    assert response.json()["outcome"] == "success"


# PostgreSQL -----------------------------------------------------------------


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_racing_pauses_pause_once_with_one_row_and_one_event(
    live_server, integration_key
):
    import concurrent.futures

    import requests

    from feedback.webhooks.models import WebhookMessage
    from feedback.webhooks.services import webhook_endpoint_save

    webhook_endpoint_save(
        slug="erp",
        url="https://seller.example/hooks",
        secret="whsec_" + "A" * 44,
        events=["source.paused"],
    )
    SourceFactory(slug="bluesky-leads")
    url = f"{live_server.url}/api/v1/sources/bluesky-leads/pause"

    def send(index):
        return requests.post(
            url,
            json={"reason": f"racer {index}"},
            headers={"X-API-Key": integration_key[1]},
            timeout=30,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))

    assert [a.status_code for a in answers] == [200] * 8
    reasons = {a.json()["paused_reason"] for a in answers}
    assert len(reasons) == 1  # every answer shows the one pause that won
    assert SourceStatusChange.objects.count() == 1
    assert WebhookMessage.objects.count() == 1
