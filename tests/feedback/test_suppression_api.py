"""The suppression API (DESIGN §11): check a contact, add and remove entries;
integration keys only, every bad input a 4xx problem+json naming the field."""

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback.suppression.models import SuppressionEntry
from feedback.suppression.services import (
    suppression_list_save,
    suppression_rules,
    suppression_rules_forget,
)

pytestmark = pytest.mark.django_db
CHECK = "/api/v1/suppression/check"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entries(slug="returns"):
    return f"/api/v1/suppression/{slug}/entries"


@pytest.fixture
def lists(db):
    suppression_list_save(
        slug="returns", name="Returned leads", ttl_days=365, add_kinds=["return"]
    )
    suppression_list_save(
        slug="converted", name="Converted", ttl_days=None, add_kinds=["conversion"]
    )


def test_a_contact_added_by_hand_is_found_by_the_check(integration_client, lists):
    added = integration_client.post(
        entries(),
        {"email": " Mel@Example.com", "phone": "+1 (512) 555-0100"},
        format="json",
    )
    assert added.status_code == 201, added.json()
    assert added.json() == {"list": "returns", "added": 2}
    assert set(SuppressionEntry.objects.values_list("origin", flat=True)) == {"manual"}

    for body, fields in [
        ({"email": "mel@example.com"}, ["email"]),
        ({"phone": "512-555-0100"}, ["phone"]),
        ({"email_sha256": sha256("mel@example.com")}, ["email"]),
        ({"phone_sha256": sha256("5125550100").upper()}, ["phone"]),
        ({"email": "MEL@example.com", "phone": "5125550100"}, ["email", "phone"]),
    ]:
        answer = integration_client.post(CHECK, body, format="json")
        assert answer.status_code == 200, answer.json()
        data = answer.json()
        assert data["suppressed"] is True
        assert [(h["list"], h["field"]) for h in data["hits"]] == [
            ("returns", f) for f in fields
        ]
        assert all(h["added_at"] for h in data["hits"])

    answer = integration_client.post(
        CHECK, {"email": "someone@example.com"}, format="json"
    )
    assert answer.json() == {"suppressed": False, "hits": []}
    answer = integration_client.post(
        CHECK, {"email": "mel@example.com", "lists": ["converted"]}, format="json"
    )
    assert answer.json() == {"suppressed": False, "hits": []}


def test_a_contact_is_removed_by_value_or_digest(integration_client, lists):
    integration_client.post(
        entries(), {"email": "mel@example.com", "phone": "5125550100"}, format="json"
    )
    removed = integration_client.delete(
        entries(), {"email_sha256": sha256("mel@example.com")}, format="json"
    )
    assert removed.status_code == 200
    assert removed.json() == {"list": "returns", "removed": 1}
    removed = integration_client.delete(
        entries(), {"phone": "1 512 555 0100"}, format="json"
    )
    assert removed.json() == {"list": "returns", "removed": 1}
    assert not SuppressionEntry.objects.exists()
    again = integration_client.delete(entries(), {"phone": "5125550100"}, format="json")
    assert again.json() == {"list": "returns", "removed": 0}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("post", CHECK, {}, 422, ""),
        ("post", CHECK, {"email": "not an email"}, 422, "email"),
        ("post", CHECK, {"phone": "call me"}, 422, "phone"),
        ("post", CHECK, {"email_sha256": "abc"}, 422, "email_sha256"),
        ("post", CHECK, {"phone_sha256": "z" * 64}, 422, "phone_sha256"),
        ("post", CHECK, {"email": "a@example.com", "lists": ["nope"]}, 422, "lists"),
        ("post", CHECK, {"email": "a@example.com", "lists": []}, 422, "lists"),
        ("post", CHECK, {"email": "a@example.com", "lists": "returns"}, 422, "lists"),
        ("post", CHECK, {"emial": "a@example.com"}, 422, "emial"),
        ("post", CHECK, {"email": ["a@example.com"]}, 422, "email"),
        ("post", CHECK, ["a@example.com"], 422, ""),
        ("post", CHECK, {"email": "x" * 300 + "@example.com"}, 422, "email"),
        ("post", entries(), {}, 422, ""),
        ("post", entries(), {"email_sha256": sha256("a")}, 422, "email_sha256"),
        ("post", entries("nope"), {"email": "a@example.com"}, 404, None),
        ("delete", entries(), {"md5": "0" * 32}, 422, "md5"),
        ("delete", entries("nope"), {"email": "a@example.com"}, 404, None),
    ],
)
def test_bad_input_is_a_problem_naming_the_field(
    integration_client, lists, method, path, body, status, field
):
    answer = getattr(integration_client, method)(path, body, format="json")
    assert answer.status_code == status, answer.content
    assert answer["Content-Type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem


def test_text_the_database_cannot_store_is_refused(integration_client, lists):
    answer = integration_client.post(
        CHECK,
        data=b'{"email": "a\\u0000@example.com"}',
        content_type="application/json",
    )
    assert answer.status_code in (400, 422)
    assert answer["Content-Type"] == "application/problem+json"


def test_buyer_keys_and_anonymous_callers_are_refused(buyer_client, client, lists):
    for caller, status in [(buyer_client, 403), (client, 401)]:
        for method, path in [
            ("post", CHECK),
            ("post", entries()),
            ("delete", entries()),
        ]:
            answer = getattr(caller, method)(
                path, {"email": "a@example.com"}, content_type="application/json"
            )
            assert answer.status_code == status, (method, path)
            assert answer["Content-Type"] == "application/problem+json"
    assert not SuppressionEntry.objects.exists()


def test_the_check_reads_the_entries_in_one_query(integration_client, lists, settings):
    settings.LEADBACK_SUPPRESSION_CACHE_S = 60
    suppression_rules_forget()
    integration_client.post(entries(), {"email": "mel@example.com"}, format="json")
    suppression_rules()
    integration_client.post(CHECK, {"email": "warm@example.com"}, format="json")
    with CaptureQueriesContext(connection) as queries:
        answer = integration_client.post(
            CHECK, {"email": "mel@example.com", "phone": "5125550100"}, format="json"
        )
    suppression_rules_forget()
    assert answer.json()["suppressed"] is True
    touching = [q["sql"] for q in queries.captured_queries if "suppression" in q["sql"]]
    assert len(touching) == 1


def test_adding_honours_an_idempotency_key(integration_client, lists):
    for _ in range(2):
        answer = integration_client.post(
            entries(),
            {"email": "mel@example.com"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="add-mel-1",
        )
        assert answer.status_code == 201
        assert answer.json() == {"list": "returns", "added": 1}
    assert answer.headers.get("Idempotency-Replayed") == "true"
    assert SuppressionEntry.objects.count() == 1
