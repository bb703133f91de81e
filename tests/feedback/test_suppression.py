"""Suppression lists (DESIGN §11): as code, the entries accepted feedback and
approved returns add in the intake's transaction, digests only, expiry."""

import hashlib
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.settings import CELERY_BEAT_SCHEDULE
from feedback.configuration import (
    ConfigurationError,
    config_export,
    config_import,
    config_validate,
)
from feedback.intake.pipeline import (
    FILE,
    ReceiveStatus,
    feedback_receive,
    feedback_receive_many,
)
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.services import return_approve, return_reject
from feedback.suppression.digests import digest, email_value, phone_value
from feedback.suppression.models import SuppressionEntry, SuppressionList
from feedback.suppression.selectors import suppression_check
from feedback.suppression.services import (
    suppression_entries_expire,
    suppression_list_save,
    suppression_rules,
    suppression_rules_forget,
)
from feedback.tasks import expire_suppression_entries_task
from tests.factories import BuyerPolicyFactory, DeliveryEventFactory, LeadFactory

pytestmark = pytest.mark.django_db
API = Feedback.Channel.API


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def returns_list(**overrides):
    fields = {
        "slug": "returns",
        "name": "Returned leads",
        "ttl_days": 365,
        "add_kinds": ["return"],
        "add_reasons": [],
    }
    return suppression_list_save(**{**fields, **overrides})


def delivery_to(buyer, email="Mel.Tester@Example.com ", phone="+1 (512) 555-0100"):
    lead = LeadFactory(data={"email": email, "phone_1": phone, "first_name": "Mel"})
    return DeliveryEventFactory(buyer=buyer, lead=lead)


def send(buyer, delivery, kind="return", reason="Wrong number"):
    return feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": kind, "reason": reason},
        channel=API,
    )


def on_list(slug="returns"):
    return sorted(
        (e.field, e.sha256, e.md5)
        for e in SuppressionEntry.objects.filter(list__slug=slug)
    )


MEL = [
    (
        "email",
        sha256("mel.tester@example.com"),
        hashlib.md5(b"mel.tester@example.com").hexdigest(),  # noqa: S324
    ),
    ("phone", sha256("5125550100"), hashlib.md5(b"5125550100").hexdigest()),  # noqa: S324
]


# Normalisation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Mel@Example.COM", "mel@example.com"),
        ("  mel@example.com\t", "mel@example.com"),
        ("MEL+tag@example.com", "mel+tag@example.com"),
        ("not an email", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_emails_are_trimmed_and_lower_case(raw, normal):
    assert email_value(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("(512) 555-0100", "5125550100"),
        ("+1 512 555 0100", "5125550100"),
        ("1-512-555-0100", "5125550100"),
        ("512.555.0100", "5125550100"),
        ("+44 20 7946 0958", "442079460958"),
        ("no digits", ""),
        (None, ""),
    ],
)
def test_phones_are_digits_and_nanp_without_the_leading_one(raw, normal):
    assert phone_value(raw) == normal


def test_a_digest_is_sha256_and_md5_hex_of_the_normal_value():
    found = digest("email", "mel@example.com")
    assert found.sha256 == sha256("mel@example.com")
    assert found.md5 == hashlib.md5(b"mel@example.com").hexdigest()  # noqa: S324


# Configuration as code ------------------------------------------------------

LIST_DOC = {
    "slug": "returns",
    "name": "Returned leads",
    "ttl_days": 365,
    "add_on": {"kinds": ["return"], "reasons": ["Wrong number"]},
}


def test_lists_are_imported_exported_and_updated_as_code():
    report = config_import(document={"suppression_lists": [LIST_DOC]}, dry_run=False)
    assert [str(c) for c in report.changes] == ["suppression list returns: created"]
    row = SuppressionList.objects.get()
    assert (row.name, row.ttl_days, row.add_kinds, row.add_reasons) == (
        "Returned leads",
        365,
        ["return"],
        ["Wrong number"],
    )
    assert config_export()["suppression_lists"] == [LIST_DOC]

    report = config_import(document={"suppression_lists": [LIST_DOC]}, dry_run=False)
    assert [str(c) for c in report.changes] == ["suppression list returns: unchanged"]

    changed = {**LIST_DOC, "ttl_days": None, "add_on": {"kinds": ["conversion"]}}
    report = config_import(document={"suppression_lists": [changed]}, dry_run=False)
    assert [str(c) for c in report.changes] == [
        "suppression list returns: updated (ttl_days, add_on)"
    ]
    row.refresh_from_db()
    assert (row.ttl_days, row.add_kinds, row.add_reasons) == (None, ["conversion"], [])


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (
            {**LIST_DOC, "ttl_days": 0},
            "$.suppression_lists[0].ttl_days: must be at least 1",
        ),
        (
            {**LIST_DOC, "add_on": {"kinds": ["refund"]}},
            "$.suppression_lists[0].add_on.kinds[0]: must be one of",
        ),
        (
            {**LIST_DOC, "colour": "red"},
            "$.suppression_lists[0].colour: unknown key",
        ),
        (
            {"slug": "returns", "ttl_days": 30},
            "$.suppression_lists[0].name: is required",
        ),
        (
            {**LIST_DOC, "slug": "bad slug"},
            "$.suppression_lists[0].slug: must contain only letters",
        ),
    ],
)
def test_invalid_lists_are_refused_with_their_path(item, problem):
    problems = [str(p) for p in config_validate(document={"suppression_lists": [item]})]
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(ConfigurationError):
        config_import(document={"suppression_lists": [item]}, dry_run=False)
    assert not SuppressionList.objects.exists()


def test_a_new_ttl_applies_to_the_entries_already_on_the_list(buyer):
    returns_list(ttl_days=365)
    send(buyer, delivery_to(buyer))
    entry = SuppressionEntry.objects.first()
    assert entry.expires_at == entry.added_at + timedelta(days=365)

    returns_list(ttl_days=30)
    entry.refresh_from_db()
    assert entry.expires_at == entry.added_at + timedelta(days=30)
    returns_list(ttl_days=None)
    entry.refresh_from_db()
    assert entry.expires_at is None


# What adds to a list --------------------------------------------------------


def test_an_accepted_return_adds_the_leads_email_and_phone(buyer):
    returns_list()
    result = send(buyer, delivery_to(buyer))
    assert result.status == ReceiveStatus.ACCEPTED
    assert on_list() == sorted(MEL)
    assert set(SuppressionEntry.objects.values_list("origin", flat=True)) == {
        "feedback"
    }


def test_refused_feedback_and_kinds_not_listed_add_nothing(buyer):
    returns_list()
    delivery = delivery_to(buyer)
    assert send(buyer, delivery, kind="conversion").status == ReceiveStatus.ACCEPTED
    BuyerPolicyFactory(buyer=buyer, kind="return", enabled=False)
    assert send(buyer, delivery).status == ReceiveStatus.FORBIDDEN
    assert on_list() == []


def test_only_the_listed_reasons_add_when_reasons_are_given(buyer):
    returns_list(add_reasons=["Disconnected phone"])
    send(buyer, delivery_to(buyer, email="a@example.com"), reason="Wrong number")
    assert on_list() == []
    send(buyer, delivery_to(buyer, email="b@example.com"), reason="disconnected PHONE")
    assert ("email", sha256("b@example.com")) in [e[:2] for e in on_list()]


def test_a_conversion_list_is_filled_on_the_single_insert_path(buyer):
    # One conversion with nothing to forward takes the intake's fastest path
    # (one INSERT, no transaction): a list of conversions makes it take the
    # transaction, and the entries are written with the feedback.
    suppression_list_save(
        slug="converted", name="Converted", ttl_days=None, add_kinds=["conversion"]
    )
    send(buyer, delivery_to(buyer), kind="conversion", reason="")
    assert on_list("converted") == sorted(MEL)
    assert SuppressionEntry.objects.get(field="email").expires_at is None


def test_a_pending_return_adds_nothing_until_approved(buyer):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    returns_list()
    send(buyer, delivery_to(buyer))
    feedback = Feedback.objects.get()
    assert feedback.review_state == Feedback.ReviewState.PENDING
    assert on_list() == []

    return_approve(feedback=feedback, note="Checked")
    assert on_list() == sorted(MEL)


def test_a_return_over_the_cap_adds_nothing(buyer):
    BuyerPolicyFactory(buyer=buyer, cap_percent=Decimal(0), cap_min=1)
    returns_list()
    first = delivery_to(buyer, email="first@example.com", phone="5125550001")
    second = delivery_to(buyer, email="second@example.com", phone="5125550002")
    assert send(buyer, first).status == ReceiveStatus.ACCEPTED
    assert send(buyer, second).status == ReceiveStatus.REFUSED
    assert sorted(e[1] for e in on_list()) == sorted(
        [sha256("first@example.com"), sha256("5125550001")]
    )


def test_a_rejected_return_adds_nothing(buyer):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    returns_list()
    send(buyer, delivery_to(buyer))
    return_reject(feedback=Feedback.objects.get(), note="Lead was fine")
    assert on_list() == []


def test_a_batch_adds_every_accepted_lead_in_one_statement(buyer):
    returns_list()
    deliveries = [delivery_to(buyer, email=f"p{i}@example.com") for i in range(25)]
    items = [
        {"event_id": d.event_id, "type": "return", "reason": "Wrong number"}
        for d in deliveries
    ]
    with CaptureQueriesContext(connection) as queries:
        results = feedback_receive_many(buyer=buyer, items=items, channel=API)
    assert {r.status for r in results} == {ReceiveStatus.ACCEPTED}
    # 25 emails; the 25 leads share one phone, and a digest is one entry.
    assert SuppressionEntry.objects.filter(field="email").count() == 25
    assert SuppressionEntry.objects.filter(field="phone").count() == 1
    writes = [
        q["sql"] for q in queries.captured_queries if "suppressionentry" in q["sql"]
    ]
    assert len(writes) == 1


def test_a_csv_chunk_adds_entries_inside_the_chunks_transaction(buyer):
    returns_list()
    deliveries = [delivery_to(buyer, email=f"c{i}@example.com") for i in range(3)]
    items = [
        {"event_id": d.event_id, "type": "return", "reason": "Wrong number"}
        for d in deliveries
    ]

    class Abandoned(Exception):
        pass

    seen = []

    def chunk_then_fail() -> None:
        with transaction.atomic():
            feedback_receive_many(
                buyer=buyer, items=items, channel=Feedback.Channel.CSV, strategy=FILE
            )
            seen.append(SuppressionEntry.objects.filter(field="email").count())
            raise Abandoned

    with pytest.raises(Abandoned):
        chunk_then_fail()
    assert seen == [3]
    # Rolled back with the chunk: no entry without its feedback.
    assert not SuppressionEntry.objects.exists()
    assert not Feedback.objects.exists()

    with transaction.atomic():
        feedback_receive_many(
            buyer=buyer, items=items, channel=Feedback.Channel.CSV, strategy=FILE
        )
    assert SuppressionEntry.objects.filter(field="email").count() == 3


def test_a_list_deleted_meanwhile_takes_no_entries(buyer, settings):
    settings.LEADBACK_SUPPRESSION_CACHE_S = 60
    suppression_rules_forget()
    returns_list()
    suppression_rules()  # this process keeps the list for a minute
    SuppressionList.objects.all().delete()  # as another process would
    assert send(buyer, delivery_to(buyer)).status == ReceiveStatus.ACCEPTED
    assert not SuppressionEntry.objects.exists()
    suppression_rules_forget()


def test_the_table_holds_no_plaintext_contact(buyer):
    returns_list()
    send(buyer, delivery_to(buyer))
    dump = json.dumps(
        list(SuppressionEntry.objects.values())
        + list(SuppressionList.objects.values()),
        default=str,
    ).lower()
    for plain in ("mel.tester", "example.com", "5125550100", "555-0100", "555"):
        assert plain not in dump
    assert sha256("mel.tester@example.com") in dump


# Expiry ---------------------------------------------------------------------


def test_expired_entries_are_deleted_by_the_beat_task(buyer):
    returns_list(ttl_days=30)
    send(buyer, delivery_to(buyer, email="old@example.com", phone="5125550111"))
    SuppressionEntry.objects.update(
        added_at=timezone.now() - timedelta(days=31),
        expires_at=timezone.now() - timedelta(days=1),
    )
    send(buyer, delivery_to(buyer, email="new@example.com", phone="5125550222"))

    assert expire_suppression_entries_task() == 2
    assert sorted(SuppressionEntry.objects.values_list("sha256", flat=True)) == sorted(
        [sha256("new@example.com"), sha256("5125550222")]
    )
    assert suppression_entries_expire() == 0
    schedule = CELERY_BEAT_SCHEDULE["expire-suppression-entries"]
    assert schedule["task"] == "feedback.tasks.expire_suppression_entries_task"


def test_a_contact_added_again_starts_its_ttl_over(buyer):
    returns_list(ttl_days=30)
    send(buyer, delivery_to(buyer))
    SuppressionEntry.objects.update(
        added_at=timezone.now() - timedelta(days=20),
        expires_at=timezone.now() + timedelta(days=10),
    )
    send(buyer, delivery_to(buyer))
    assert SuppressionEntry.objects.count() == 2
    for entry in SuppressionEntry.objects.all():
        assert entry.expires_at > timezone.now() + timedelta(days=29)


# The check ------------------------------------------------------------------


def test_the_check_finds_hits_and_ignores_expired_entries(buyer):
    returns_list()
    suppression_list_save(
        slug="converted", name="Converted", ttl_days=None, add_kinds=["conversion"]
    )
    send(buyer, delivery_to(buyer))
    email = ("email", sha256("mel.tester@example.com"))
    phone = ("phone", sha256("5125550100"))

    hits = suppression_check(digests=[email, phone])
    assert [(h.list, h.field) for h in hits] == [
        ("returns", "email"),
        ("returns", "phone"),
    ]
    assert suppression_check(digests=[email], lists=["converted"]) == []
    # A phone's digest asked as an email is no hit.
    assert suppression_check(digests=[("email", phone[1])]) == []

    SuppressionEntry.objects.filter(field="email").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert [h.field for h in suppression_check(digests=[email, phone])] == ["phone"]


def test_the_check_is_one_query_on_the_entries(buyer, settings):
    settings.LEADBACK_SUPPRESSION_CACHE_S = 60
    suppression_rules_forget()
    returns_list()
    send(buyer, delivery_to(buyer))
    suppression_rules()
    digests = [("email", sha256("mel.tester@example.com")), ("phone", sha256("x"))]
    with CaptureQueriesContext(connection) as queries:
        hits = suppression_check(digests=digests)
    suppression_rules_forget()
    assert [h.field for h in hits] == ["email"]
    assert len(queries.captured_queries) == 1
    sql = queries.captured_queries[0]["sql"]
    assert "suppressionentry" in sql
    assert "JOIN" not in sql.upper()


@pytest.mark.service
def test_the_check_is_an_index_scan_on_postgresql(buyer):
    if connection.vendor != "postgresql":
        pytest.skip("EXPLAIN is PostgreSQL's")
    listed = returns_list()
    SuppressionEntry.objects.bulk_create(
        SuppressionEntry(
            list=listed, field="email", sha256=sha256(str(i)), md5="0" * 32
        )
        for i in range(2000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feedback_suppressionentry")
    entries = SuppressionEntry.objects.filter(sha256__in=[sha256("7")]).filter(
        expires_at__isnull=True
    )
    plan = entries.explain()
    assert "suppression_entry_unique" in plan
    assert "Seq Scan" not in plan


def test_the_command_expires_entries_as_beat_does(buyer):
    returns_list(ttl_days=30)
    send(buyer, delivery_to(buyer))
    SuppressionEntry.objects.filter(field="email").update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    out = io.StringIO()
    call_command("expire_suppression_entries", stdout=out)
    assert out.getvalue().strip() == "Deleted 1 expired suppression entry."
    assert list(SuppressionEntry.objects.values_list("field", flat=True)) == ["phone"]


def test_the_check_finds_a_list_another_process_created(buyer, settings):
    settings.LEADBACK_SUPPRESSION_CACHE_S = 60
    suppression_rules_forget()
    assert suppression_rules() == ()  # this process read no list a moment ago
    listed = SuppressionList.objects.create(  # as another process would
        slug="returns", name="Returned leads", add_kinds=["return"]
    )
    SuppressionEntry.objects.create(
        list=listed, field="email", sha256=sha256("mel@example.com"), md5="0" * 32
    )
    suppression_rules_forget(none_exist=True)
    hits = suppression_check(digests=[("email", sha256("mel@example.com"))])
    suppression_rules_forget()
    assert [(h.list, h.field) for h in hits] == [("returns", "email")]
