"""The audit log (DESIGN §12): each export of personal data and each change of
configuration writes exactly one row naming who, what, when and the client
address; staff only read the rows; retention is the only deletion; no row holds
a lead's personal data or a secret."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils import timezone

from feedback.audit.context import Actor
from feedback.audit.models import AuditEntry
from feedback.audit.services import (
    audit_expire,
    audit_record,
    changed_fields,
    redacted_query,
)
from feedback.models import ApiKey, Buyer, BuyerPolicy
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    BuyerFactory,
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    LeadFactory,
    SourceFactory,
    UserFactory,
)
from tests.feedback.test_admin import buyer_form
from tests.feedback.test_configuration import example
from tests.sources.test_admin import source_form
from tests.sources.test_config_admin import config_form

pytestmark = pytest.mark.django_db

ADDRESS = "198.51.100.7"
LOG = reverse("admin:feedback_auditentry_changelist")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    client.defaults["REMOTE_ADDR"] = ADDRESS
    return client


def only_row(**filters) -> AuditEntry:
    """The one audit row the filters select; fails on none or several."""
    rows = list(AuditEntry.objects.filter(**filters))
    assert len(rows) == 1, [model_to_dict(r) for r in rows]
    return rows[0]


def row_text(row: AuditEntry) -> str:
    return json.dumps(model_to_dict(row), default=str)


def assert_no_personal_data(lead) -> None:
    """Nothing of the lead's contact details is in any audit row."""
    every_row = " ".join(row_text(r) for r in AuditEntry.objects.all())
    for value in (
        lead.data["email"],
        lead.data["phone_1"],
        lead.data["last_name"],
    ):
        assert value not in every_row


# Exports of personal data -------------------------------------------------------


def test_the_portal_delivery_csv_is_recorded_with_its_filters(client, buyer_user):
    lead = LeadFactory()
    DeliveryEventFactory(buyer=buyer_user.memberships.get().buyer, lead=lead)
    DeliveryEventFactory(buyer=buyer_user.memberships.get().buyer)
    client.force_login(buyer_user)
    AuditEntry.objects.all().delete()

    response = client.get(
        "/portal/deliveries.csv",
        {"q": lead.data["email"], "feedback": ""},
        REMOTE_ADDR=ADDRESS,
    )
    unfiltered = client.get("/portal/deliveries.csv", REMOTE_ADDR=ADDRESS)

    assert response.status_code == 200
    assert lead.data["email"] in response.content.decode()
    rows = list(AuditEntry.objects.order_by("pk"))
    assert len(rows) == 2
    searched, everything = rows
    assert searched.kind == AuditEntry.Kind.EXPORT
    assert searched.via == AuditEntry.Via.PORTAL
    assert searched.subject == "deliveries.csv"
    assert (searched.actor, searched.actor_user) == ("alice", buyer_user)
    assert searched.address == ADDRESS
    assert searched.object_repr == "Acme Insurance"
    assert searched.query == "q=(withheld)"
    assert searched.row_count == 1
    assert unfiltered.status_code == 200
    assert (everything.query, everything.row_count) == ("", 2)
    assert_no_personal_data(lead)


def test_the_portal_credits_csv_is_recorded(client, buyer_user):
    client.force_login(buyer_user)
    AuditEntry.objects.all().delete()

    response = client.get("/portal/credits.csv", REMOTE_ADDR=ADDRESS)

    assert response.status_code == 200
    row = only_row()
    assert (row.subject, row.via, row.actor_user) == (
        "credits.csv",
        AuditEntry.Via.PORTAL,
        buyer_user,
    )
    assert (row.row_count, row.address) == (0, ADDRESS)


def test_the_address_is_the_clients_behind_a_trusted_proxy(
    client, buyer_user, settings
):
    settings.LEADBACK_TRUSTED_PROXIES = 1
    client.force_login(buyer_user)
    AuditEntry.objects.all().delete()

    client.get(
        "/portal/deliveries.csv",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="203.0.113.99, 192.0.2.44",
    )
    # A header the client wrote itself holds no address: none is recorded.
    client.get(
        "/portal/deliveries.csv",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="not-an-address",
    )

    assert list(
        AuditEntry.objects.order_by("pk").values_list("address", flat=True)
    ) == [
        "192.0.2.44",
        None,
    ]


def test_an_admin_export_is_recorded(staff_client):
    BuyerFactory()  # a buyer's credits are what the export would hold
    AuditEntry.objects.all().delete()

    response = staff_client.get(
        reverse("admin:feedback_credit_export"), {"buyer__id__exact": "1"}
    )
    digests = staff_client.get(reverse("admin:feedback_suppressionentry_export"))

    assert response.status_code == 200
    assert digests.status_code == 200
    b"".join(digests.streaming_content)
    credits, suppression = AuditEntry.objects.order_by("pk")
    assert (credits.kind, credits.via, credits.subject) == (
        AuditEntry.Kind.EXPORT,
        AuditEntry.Via.ADMIN,
        "credits.csv",
    )
    assert (credits.actor, credits.address) == ("admin", ADDRESS)
    assert credits.query == "buyer__id__exact=1"
    assert credits.row_count == 0
    assert (suppression.subject, suppression.address) == ("suppression.csv", ADDRESS)


def test_an_api_listing_of_leads_is_recorded_with_the_key(buyer, buyer_key):
    from rest_framework.test import APIClient

    api_key, raw_key = buyer_key
    feedback = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.credentials(HTTP_X_API_KEY=raw_key)
    AuditEntry.objects.all().delete()

    listing = client.get("/api/v1/feedback", {"kind": "conversion"})
    returns = client.get("/api/v1/returns")

    assert listing.status_code == 200
    assert listing.json()["results"][0]["lead"]["email"] == feedback.lead.data["email"]
    assert returns.status_code == 200
    feedback_row, returns_row = AuditEntry.objects.order_by("pk")
    assert (feedback_row.kind, feedback_row.via, feedback_row.subject) == (
        AuditEntry.Kind.EXPORT,
        AuditEntry.Via.API,
        "GET /api/v1/feedback",
    )
    assert feedback_row.actor_key == api_key
    assert feedback_row.actor_user is None
    assert feedback_row.actor == f"API key {api_key.prefix}… (crm)"
    assert (feedback_row.address, feedback_row.query) == (ADDRESS, "kind=conversion")
    assert feedback_row.row_count == 1
    assert (returns_row.subject, returns_row.row_count) == ("GET /api/v1/returns", 0)
    assert_no_personal_data(feedback.lead)


def test_a_refused_listing_records_nothing(buyer_client):
    AuditEntry.objects.all().delete()

    response = buyer_client.get("/api/v1/feedback", {"since": "yesterday"})

    assert response.status_code == 422
    assert not AuditEntry.objects.exists()


def test_refused_import_rows_downloaded_by_api_portal_and_admin(
    buyer, buyer_client, buyer_key, buyer_user, client, staff_user
):
    from feedback.imports.models import FeedbackImport
    from feedback.imports.services import feedback_import_process
    from tests.feedback.test_imports_api import csv_bytes, post_file

    delivery = DeliveryEventFactory(buyer=buyer)
    imported = post_file(
        buyer_client,
        csv_bytes([[delivery.event_id, "refund", ""], ["f" * 24, "x", ""]]),
    ).json()
    feedback_import = FeedbackImport.objects.get()
    feedback_import_process(import_id=feedback_import.pk)
    AuditEntry.objects.all().delete()

    by_key = buyer_client.get(imported["links"]["refused_csv"], REMOTE_ADDR=ADDRESS)
    client.force_login(buyer_user)
    by_buyer = client.get(
        f"/portal/imports/{feedback_import.public_id}/refused.csv", REMOTE_ADDR=ADDRESS
    )
    client.force_login(staff_user)
    by_staff = client.get(
        reverse("admin:feedback_feedbackimport_refused", args=[feedback_import.pk]),
        REMOTE_ADDR=ADDRESS,
    )

    assert [r.status_code for r in (by_key, by_buyer, by_staff)] == [200, 200, 200]
    rows = list(AuditEntry.objects.order_by("pk"))
    assert [(r.via, r.actor) for r in rows] == [
        (AuditEntry.Via.API, f"API key {buyer_key[0].prefix}… (crm)"),
        (AuditEntry.Via.PORTAL, "alice"),
        (AuditEntry.Via.ADMIN, "admin"),
    ]
    for row in rows:
        assert row.subject == f"import {feedback_import.public_id} refused rows"
        assert (row.row_count, row.address, row.object_repr) == (
            2,
            ADDRESS,
            "Acme Insurance",
        )


def test_contact_details_in_any_filter_are_withheld():
    from django.http import QueryDict

    query = QueryDict(
        "source=bluesky&reference=mel@example.com&ref=(512) 555-0100"
        "&month=2026-11&since=2026-11-01T00:00:00Z&event_id=5f3a9c0d1e2b4a6f8c7d9e0a"
        "&ref=+15125550100&q=Tester"
    )

    assert redacted_query(query) == (
        "source=bluesky&reference=(withheld)&ref=(withheld)&ref=(withheld)"
        "&month=2026-11&since=2026-11-01T00:00:00Z"
        "&event_id=5f3a9c0d1e2b4a6f8c7d9e0a&q=(withheld)"
    )


# Changes of configuration in the admin -----------------------------------------


def test_a_buyer_added_and_changed_in_the_admin(staff_client):
    AuditEntry.objects.all().delete()

    added = staff_client.post(reverse("admin:feedback_buyer_add"), buyer_form())
    buyer = Buyer.objects.get()
    changed = staff_client.post(
        reverse("admin:feedback_buyer_change", args=[buyer.pk]),
        buyer_form(name="Acme Insurance Co", **{"memberships-INITIAL_FORMS": "0"}),
    )

    assert (added.status_code, changed.status_code) == (302, 302)
    addition = only_row(kind=AuditEntry.Kind.ADDITION)
    change = only_row(kind=AuditEntry.Kind.CHANGE)
    assert (addition.subject, addition.object_id) == ("buyer", str(buyer.pk))
    assert (addition.via, addition.actor, addition.address) == (
        AuditEntry.Via.ADMIN,
        "admin",
        ADDRESS,
    )
    assert change.object_repr == "Acme Insurance Co"
    assert change.fields == ["Name"]
    assert change.address == ADDRESS


def test_a_source_changed_in_the_admin(staff_client):
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    AuditEntry.objects.all().delete()

    response = staff_client.post(
        reverse("admin:sources_source_change", args=[source.pk]),
        source_form(name="Bluesky"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    row = only_row()
    assert (row.kind, row.subject, row.object_repr) == (
        AuditEntry.Kind.CHANGE,
        "source",
        "Bluesky",
    )
    assert "Name" in row.fields
    assert (row.actor, row.address, row.via) == ("admin", ADDRESS, "admin")


def test_a_feedback_config_added_in_the_admin_never_shows_its_secret(staff_client):
    source = SourceFactory(name="Bluesky Leads")
    AuditEntry.objects.all().delete()

    response = staff_client.post(
        reverse("admin:sources_feedbackconfig_add"),
        config_form(
            source,
            mappings=[("lead_id", "{{ lead.id }}")],
            auth_type="bearer",
            auth_secret="tok-very-secret-1",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    config = FeedbackConfig.objects.get()
    row = only_row()
    assert (row.kind, row.subject, row.object_id) == (
        AuditEntry.Kind.ADDITION,
        "feedback config",
        str(config.pk),
    )
    assert row.object_repr == str(config)
    assert row.address == ADDRESS
    assert "tok-very-secret-1" not in row_text(row)

    staff_client.post(
        reverse("admin:sources_feedbackconfig_change", args=[config.pk]),
        config_form(source, auth_type="bearer", auth_secret="tok-other-secret-2")
        | {"mappings-TOTAL_FORMS": "0"},
    )
    change = only_row(kind=AuditEntry.Kind.CHANGE)
    assert "tok-other-secret-2" not in row_text(change)


def test_a_policy_changed_in_the_admin(staff_client):
    policy = BuyerPolicyFactory(kind=Kind.CONVERSION)
    AuditEntry.objects.all().delete()
    url = reverse("admin:feedback_buyerpolicy_change", args=[policy.pk])

    response = staff_client.post(
        url,
        {
            "buyer": str(policy.buyer_id),
            "kind": "conversion",
            "flow": "",
            "enabled": "on",
            "max_age_days": "45",
            "rules": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    row = only_row()
    assert (row.kind, row.subject, row.object_id) == (
        AuditEntry.Kind.CHANGE,
        "buyer policy",
        str(policy.pk),
    )
    assert "Maximum return age (days)" in row.fields
    assert row.address == ADDRESS


def test_a_key_created_renamed_and_revoked_in_the_admin(staff_client, buyer):
    AuditEntry.objects.all().delete()

    staff_client.post(
        reverse("admin:feedback_apikey_add"),
        {"name": "crm", "scope": "buyer", "buyer": str(buyer.pk)},
    )
    api_key = ApiKey.objects.get()
    staff_client.post(
        reverse("admin:feedback_apikey_change", args=[api_key.pk]), {"name": "crm-2"}
    )
    staff_client.post(
        reverse("admin:feedback_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [str(api_key.pk)]},
    )

    created, renamed, revoked = AuditEntry.objects.order_by("pk")
    assert (created.kind, created.subject, created.object_id) == (
        AuditEntry.Kind.ADDITION,
        "API key",
        str(api_key.pk),
    )
    assert created.object_repr == f"crm ({api_key.prefix}…)"
    assert (renamed.kind, renamed.fields) == (AuditEntry.Kind.CHANGE, ["Name"])
    assert (revoked.kind, revoked.fields) == (AuditEntry.Kind.CHANGE, ["revoked_at"])
    for row in (created, renamed, revoked):
        assert (row.via, row.actor, row.address) == ("admin", "admin", ADDRESS)
        assert api_key.key_hash not in row_text(row)


def test_keys_made_in_the_portal_and_on_the_command_line_are_recorded(
    client, buyer_user, buyer
):
    client.force_login(buyer_user)
    AuditEntry.objects.all().delete()

    client.post("/portal/keys/", {"name": "website"}, REMOTE_ADDR=ADDRESS)
    call_command(
        "create_api_key", "--buyer", buyer.slug, stdout=StringIO(), stderr=StringIO()
    )

    portal, command = AuditEntry.objects.order_by("pk")
    assert (portal.kind, portal.via, portal.actor_user, portal.address) == (
        AuditEntry.Kind.ADDITION,
        AuditEntry.Via.PORTAL,
        buyer_user,
        ADDRESS,
    )
    assert portal.object_repr.startswith("website (lb_")
    assert (command.via, command.address) == (AuditEntry.Via.COMMAND, None)
    assert command.actor.startswith("manage.py create_api_key")


def test_several_deleted_at_once_are_each_recorded(staff_client):
    first, second = BuyerFactory(name="First"), BuyerFactory(name="Second")
    single = BuyerFactory(name="Third")
    AuditEntry.objects.all().delete()

    staff_client.post(
        reverse("admin:feedback_buyer_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [str(first.pk), str(second.pk)],
            "post": "yes",
        },
    )
    staff_client.post(
        reverse("admin:feedback_buyer_delete", args=[single.pk]), {"post": "yes"}
    )

    assert not Buyer.objects.exists()
    rows = AuditEntry.objects.filter(kind=AuditEntry.Kind.DELETION)
    assert sorted(rows.values_list("object_repr", flat=True)) == [
        "First",
        "Second",
        "Third",
    ]
    assert set(rows.values_list("address", flat=True)) == {ADDRESS}
    assert AuditEntry.objects.count() == 3


def test_objects_whose_text_may_be_a_person_are_named_by_id_only(staff_client):
    user = UserFactory(username="mel.tester@example.com")
    AuditEntry.objects.all().delete()

    staff_client.post(
        reverse("admin:auth_user_change", args=[user.pk]),
        {
            "username": "mel.tester@example.com",
            "first_name": "Mel",
            "last_name": "Tester",
            "email": "mel.tester@example.com",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    row = only_row()
    assert (row.subject, row.object_id, row.object_repr) == ("user", str(user.pk), "")
    assert "mel.tester" not in row_text(row)
    assert "First name" in row.fields


def test_change_messages_give_field_and_inline_names_only():
    message = json.dumps(
        [
            {"changed": {"fields": ["Name", "Is active"]}},
            {"added": {"name": "buyer membership", "object": "mel@example.com"}},
            {
                "changed": {
                    "name": "buyer policy",
                    "object": "Return: enabled",
                    "fields": ["Max age days"],
                }
            },
        ]
    )

    assert changed_fields(message) == [
        "Name",
        "Is active",
        "buyer membership (added)",
        "buyer policy: Max age days",
    ]
    assert changed_fields("Changed by hand.") == []


def test_a_change_logged_outside_a_request_names_its_user():
    user = UserFactory(username="carol", is_staff=True)
    policy = BuyerPolicyFactory()

    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[policy],
        action_flag=CHANGE,
        change_message=[{"changed": {"fields": ["Enabled"]}}],
    )

    row = only_row(kind=AuditEntry.Kind.CHANGE)
    assert (row.actor, row.actor_user, row.address) == ("carol", user, None)
    assert row.object_id == str(policy.pk)
    assert row.fields == ["Enabled"]
    assert ContentType.objects.get_for_model(BuyerPolicy).model == "buyerpolicy"


# Configuration as code -----------------------------------------------------------


def test_import_config_records_each_item_it_writes(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(example()), encoding="utf-8")
    AuditEntry.objects.all().delete()

    call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())
    first = set(AuditEntry.objects.values_list("kind", "subject", "object_id", "via"))
    document = example()
    document["buyers"][0]["name"] = "Acme Insurance Co"
    path.write_text(json.dumps(document), encoding="utf-8")
    AuditEntry.objects.all().delete()
    call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())
    call_command(
        "import_config", str(path), "--check", stdout=StringIO(), stderr=StringIO()
    )

    assert first == {
        ("addition", "buyer", "acme-insurance", "command"),
        ("addition", "source", "bluesky-leads", "command"),
    }
    row = only_row()  # the unchanged source and the check write nothing
    assert (row.kind, row.subject, row.object_id) == (
        "change",
        "buyer",
        "acme-insurance",
    )
    assert row.fields == ["name"]
    assert row.actor.startswith("manage.py import_config")
    assert row.address is None
    assert "partner-pw" not in row_text(row)


# Append-only -------------------------------------------------------------------


def test_staff_read_the_log_but_cannot_add_change_or_delete(client, staff_user):
    call_command("setup_roles", stdout=StringIO())
    seller = UserFactory(username="sam", is_staff=True)
    seller.groups.add(Group.objects.get(name="Seller admin"))
    row = audit_record(kind=AuditEntry.Kind.CHANGE, subject="buyer", object_id="1")
    change = reverse("admin:feedback_auditentry_change", args=[row.pk])
    delete = reverse("admin:feedback_auditentry_delete", args=[row.pk])

    for user in (seller, staff_user):
        client.force_login(user)
        listing = client.get(LOG)
        assert listing.status_code == 200
        assert "delete_selected" not in listing.content.decode()
        assert client.get(change).status_code == 200
        assert client.get(reverse("admin:feedback_auditentry_add")).status_code == 403
        assert client.post(change, {"subject": "nothing"}).status_code == 403
        assert client.get(delete).status_code == 403
        assert client.post(delete, {"post": "yes"}).status_code == 403
        assert client.post(
            LOG,
            {
                "action": "delete_selected",
                "_selected_action": [str(row.pk)],
                "post": "yes",
            },
        ).status_code in (200, 302)

    row.refresh_from_db()
    assert row.subject == "buyer"
    assert AuditEntry.objects.filter(pk=row.pk).exists()
    assert {
        p.codename
        for p in ContentType.objects.get_for_model(AuditEntry).permission_set.all()
    } == {"view_auditentry"}


def test_who_may_read_the_log():
    call_command("setup_roles", stdout=StringIO())

    def has(name: str) -> bool:
        return (
            Group.objects.get(name=name)
            .permissions.filter(codename="view_auditentry")
            .exists()
        )

    assert has("Seller admin")
    assert has("Analyst")
    assert not has("Support")
    assert not has("Returns reviewer")


def test_the_log_is_filtered_and_searched(staff_client):
    key_row = audit_record(
        kind=AuditEntry.Kind.EXPORT, subject="GET /api/v1/feedback", row_count=3
    )
    audit_record(
        kind=AuditEntry.Kind.CHANGE,
        subject="source",
        object_repr="Bluesky Leads",
        fields=["Name"],
    )

    carol = UserFactory(username="carol", is_staff=True)
    dave = UserFactory(username="dave", is_staff=True)
    for user in (carol, dave):
        audit_record(
            kind=AuditEntry.Kind.DELETION,
            subject="buyer",
            actor=Actor(user.username, user=user),
        )

    by_carol = staff_client.get(LOG, {"actor_user__id__exact": carol.pk})
    carol_row = AuditEntry.objects.get(actor_user=carol)
    carol_page = staff_client.get(
        reverse("admin:feedback_auditentry_change", args=[carol_row.pk])
    ).content.decode()
    assert f"?actor_user__id__exact={carol.pk}" in carol_page
    exports = staff_client.get(LOG, {"kind__exact": "export"})
    found = staff_client.get(LOG, {"q": "Bluesky"})
    today = timezone.localdate()
    dated = staff_client.get(
        LOG,
        {
            "occurred_at__year": today.year,
            "occurred_at__month": today.month,
            "occurred_at__day": today.day,
            "actor_kind": "command",
        },
    )
    detail = staff_client.get(
        reverse("admin:feedback_auditentry_change", args=[key_row.pk])
    )

    assert by_carol.context["cl"].result_count == 1
    assert exports.context["cl"].result_count == 1
    assert found.context["cl"].result_count == 1
    assert "source “Bluesky Leads”" in found.content.decode()
    assert dated.context["cl"].result_count == 2
    assert detail.status_code == 200
    assert "GET /api/v1/feedback" in detail.content.decode()


# Retention ----------------------------------------------------------------------


def test_retention_deletes_only_rows_older_than_the_setting(settings):
    settings.LEADBACK_AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    old = audit_record(kind=AuditEntry.Kind.EXPORT, subject="deliveries.csv")
    kept = audit_record(kind=AuditEntry.Kind.EXPORT, subject="credits.csv")
    AuditEntry.objects.filter(pk=old.pk).update(occurred_at=now - timedelta(days=31))
    AuditEntry.objects.filter(pk=kept.pk).update(occurred_at=now - timedelta(days=29))

    assert audit_expire(now=now) == 1
    assert audit_expire(now=now) == 0

    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [kept.pk]


def test_the_retention_command_counts_then_deletes_old_audit_rows(settings):
    from io import StringIO

    from django.core.management import call_command

    settings.LEADBACK_AUDIT_RETENTION_DAYS = 30
    old = audit_record(kind=AuditEntry.Kind.EXPORT, subject="deliveries.csv")
    AuditEntry.objects.filter(pk=old.pk).update(
        occurred_at=timezone.now() - timedelta(days=31)
    )
    dry = StringIO()
    call_command("apply_retention", "--dry-run", stdout=dry)
    assert "audit_entries: 1" in dry.getvalue()
    assert AuditEntry.objects.filter(pk=old.pk).exists()
    done = StringIO()
    call_command("apply_retention", stdout=done)
    assert "audit_entries: 1" in done.getvalue()
    assert not AuditEntry.objects.exists()


# Changes made by services outside the admin's change log -----------------------


def test_pausing_a_source_by_api_and_resuming_it_in_the_admin(
    integration_client, integration_key, staff_client
):
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    AuditEntry.objects.all().delete()

    paused = integration_client.post(
        "/api/v1/sources/bluesky-leads/pause",
        {"reason": "Return rate above 15%"},
        format="json",
        REMOTE_ADDR="192.0.2.10",
    )
    resumed = staff_client.post(
        reverse("admin:sources_source_resume", args=[source.pk])
    )

    assert paused.status_code == 200
    assert resumed.status_code == 302
    by_key, by_staff = AuditEntry.objects.order_by("pk")
    assert (by_key.kind, by_key.subject, by_key.object_repr) == (
        AuditEntry.Kind.CHANGE,
        "source",
        "Bluesky Leads",
    )
    assert (by_key.via, by_key.actor_key, by_key.address) == (
        AuditEntry.Via.API,
        integration_key[0],
        "192.0.2.10",
    )
    assert by_key.fields == ["status", "paused_reason"]
    assert "Return rate" not in row_text(by_key)
    assert (by_staff.via, by_staff.actor, by_staff.address) == (
        AuditEntry.Via.ADMIN,
        "admin",
        ADDRESS,
    )
    assert by_staff.fields == ["status"]
