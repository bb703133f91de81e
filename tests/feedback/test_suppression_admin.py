"""The suppression admin: lists edited as in the configuration document,
entries added by email or phone, searched, removed and exported as digests."""

import csv
import hashlib
import io

import pytest
from django.urls import reverse

from feedback.suppression.models import SuppressionEntry, SuppressionList
from feedback.suppression.services import suppression_list_save

pytestmark = pytest.mark.django_db
ENTRIES = reverse("admin:feedback_suppressionentry_changelist")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def returns_list(db):
    return suppression_list_save(
        slug="returns", name="Returned leads", ttl_days=365, add_kinds=["return"]
    )


def add(admin_client, listed, emails="", phones=""):
    return admin_client.post(
        reverse("admin:feedback_suppressionentry_add"),
        {"suppression_list": listed.pk, "emails": emails, "phones": phones},
    )


def test_a_list_is_created_and_changed_in_the_admin(admin_client):
    answer = admin_client.post(
        reverse("admin:feedback_suppressionlist_add"),
        {
            "slug": "returns",
            "name": "Returned leads",
            "ttl_days": "90",
            "add_kinds": ["return", "conversion"],
            "add_reasons": "Wrong number\n\n Disconnected phone \n",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    row = SuppressionList.objects.get()
    assert (row.ttl_days, row.add_kinds, row.add_reasons) == (
        90,
        ["return", "conversion"],
        ["Wrong number", "Disconnected phone"],
    )
    page = admin_client.get(
        reverse("admin:feedback_suppressionlist_change", args=[row.pk])
    )
    assert "Wrong number\nDisconnected phone" in page.content.decode()

    listing = admin_client.get(reverse("admin:feedback_suppressionlist_changelist"))
    assert "90 days" in listing.content.decode()
    assert (
        "return, conversion (Wrong number; Disconnected phone)"
        in listing.content.decode()
    )


def test_entries_are_added_as_digests_and_found_by_email_phone_or_digest(
    admin_client, returns_list
):
    answer = add(
        admin_client,
        returns_list,
        emails="Mel@Example.com\nann@example.com",
        phones="(512) 555-0100",
    )
    assert answer.status_code == 302
    assert SuppressionEntry.objects.filter(origin="manual").count() == 3
    page = admin_client.get(answer["Location"])
    assert "Added 3 entries to Returned leads." in page.content.decode()
    assert "mel@example.com" not in page.content.decode().lower()

    for term in ("MEL@example.com ", "512-555-0100", sha256("mel@example.com")):
        found = admin_client.get(ENTRIES, {"q": term})
        assert found.context["cl"].result_count == 1, term
    assert admin_client.get(ENTRIES, {"q": "nobody"}).context["cl"].result_count == 0


def test_the_add_form_names_what_is_wrong(admin_client, returns_list):
    answer = add(admin_client, returns_list, emails="not-an-email")
    assert answer.status_code == 200
    assert "Not an email address: not-an-email" in answer.content.decode()
    answer = add(admin_client, returns_list)
    assert "Enter at least one email or phone." in answer.content.decode()
    assert not SuppressionEntry.objects.exists()


def test_entries_are_removed_and_exported_as_a_csv_of_digests(
    admin_client, returns_list
):
    add(admin_client, returns_list, emails="mel@example.com", phones="5125550100")
    other = suppression_list_save(
        slug="other", name="Other", ttl_days=None, add_kinds=[]
    )
    add(admin_client, other, emails="ann@example.com")

    export = admin_client.get(
        reverse("admin:feedback_suppressionentry_export"),
        {"list__id__exact": returns_list.pk},
    )
    assert export.status_code == 200
    assert "suppression-returns.csv" in export["Content-Disposition"]
    content = b"".join(export.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == ["list", "field", "sha256", "md5", "added_at", "expires_at"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("returns", "email", sha256("mel@example.com")),
        ("returns", "phone", sha256("5125550100")),
    ]
    assert "mel@" not in content

    email = SuppressionEntry.objects.get(list=returns_list, field="email")
    answer = admin_client.post(
        ENTRIES,
        {"action": "remove_entries", "_selected_action": [email.pk]},
        follow=True,
    )
    assert "Removed 1 entry." in answer.content.decode()
    assert SuppressionEntry.objects.filter(list=returns_list).count() == 1


def test_deleting_a_list_deletes_its_entries(admin_client, returns_list):
    add(admin_client, returns_list, emails="mel@example.com")
    answer = admin_client.post(
        reverse("admin:feedback_suppressionlist_delete", args=[returns_list.pk]),
        {"post": "yes"},
    )
    assert answer.status_code == 302
    assert not SuppressionList.objects.exists()
    assert not SuppressionEntry.objects.exists()


def test_entries_cannot_be_edited(admin_client, returns_list):
    add(admin_client, returns_list, emails="mel@example.com")
    entry = SuppressionEntry.objects.get()
    page = admin_client.get(
        reverse("admin:feedback_suppressionentry_change", args=[entry.pk])
    )
    assert page.status_code == 200
    assert 'name="sha256"' not in page.content.decode()


def test_a_list_is_changed_in_place_and_keeps_its_slug(admin_client, returns_list):
    answer = admin_client.post(
        reverse("admin:feedback_suppressionlist_change", args=[returns_list.pk]),
        {
            "slug": "renamed",
            "name": "Returns, a year",
            "ttl_days": "",
            "add_kinds": ["return"],
            "add_reasons": "",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    row = SuppressionList.objects.get()
    assert (row.pk, row.slug, row.name, row.ttl_days) == (
        returns_list.pk,
        "returns",
        "Returns, a year",
        None,
    )


def test_selected_entries_are_exported_by_the_action(admin_client, returns_list):
    add(admin_client, returns_list, emails="mel@example.com\nann@example.com")
    chosen = SuppressionEntry.objects.get(sha256=sha256("ann@example.com"))
    answer = admin_client.post(
        ENTRIES, {"action": "export_entries", "_selected_action": [chosen.pk]}
    )
    assert "suppression-selected.csv" in answer["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("returns", "email", sha256("ann@example.com"))
    ]
