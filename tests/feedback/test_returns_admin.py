"""Returns resolution in the admin: the review queue, bulk and single decisions,
evidence files, credits and their invoicing CSV, policies and permissions."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.services import (
    credits_void,
    return_approve,
    return_dispute,
    return_reject,
)
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    BuyerFactory,
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    SourceFactory,
    UserFactory,
)
from tests.feedback.test_admin import buyer_form, policy_rows
from tests.sources.test_config_admin import config_form

pytestmark = pytest.mark.django_db

QUEUE = reverse("admin:feedback_returnreview_changelist")
CREDITS = reverse("admin:feedback_credit_changelist")
EXPORT = reverse("admin:feedback_credit_export")
State = Feedback.ReviewState


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def evidence_dir(monkeypatch, tmp_path):
    """Dispute evidence written by the tests stays in the test's directory."""
    field = ReturnTransition._meta.get_field("evidence")
    monkeypatch.setattr(field, "storage", FileSystemStorage(location=tmp_path))
    return tmp_path


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def review_url(feedback) -> str:
    return reverse("admin:feedback_returnreview_change", args=[feedback.pk])


def staff_with(*codenames: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="feedback", codename__in=codenames
        )
    )
    return user


def reviewed(buyer, **policy):
    """The buyer's returns wait for a decision."""
    BuyerPolicyFactory(buyer=buyer, kind=Kind.RETURN, review="manual", **policy)
    return buyer


def delivered(buyer, *, source=None, price="25.00", **lead):
    source = source or SourceFactory(slug="bluesky", name="Bluesky Leads")
    extra = {"lead__data": lead} if lead else {}
    # The factory counts the delivery into its month, as the services do.
    return DeliveryEventFactory(
        buyer=buyer, lead__source=source, price=Decimal(price), **extra
    )


def returned(delivery, reason="Not interested", *, days_ago=0):
    """A return requested through the intake, as a buyer's CRM would."""
    result = feedback_receive(
        buyer=delivery.buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=Feedback.Channel.API,
    )
    feedback = result.feedback
    assert feedback is not None, result.reason
    if days_ago:
        Feedback.objects.filter(pk=feedback.pk).update(
            received_at=timezone.now() - timedelta(days=days_ago, minutes=5)
        )
        feedback.refresh_from_db()
    return feedback


@pytest.fixture
def acme(buyer):
    return reviewed(buyer)


def queue_rows(response) -> list[Feedback]:
    return list(response.context["cl"].result_list)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# The queue -------------------------------------------------------------------


def test_the_queue_lists_waiting_returns_oldest_first_with_their_facts(
    staff_client, acme
):
    newest = returned(delivered(acme), "Not interested")
    oldest = returned(delivered(acme), "Wrong number", days_ago=3)
    converted = delivered(acme)
    FeedbackFactory(delivery=converted, kind=Kind.CONVERSION)
    middle = returned(converted, "Not interested", days_ago=1)
    decided = returned(delivered(acme), days_ago=5)
    return_approve(feedback=decided)
    delivered(acme)  # kept

    response = staff_client.get(QUEUE)

    assert response.status_code == 200
    assert [row.pk for row in queue_rows(response)] == [
        oldest.pk,
        middle.pk,
        newest.pk,
    ]
    page = response.content.decode()
    ages = [
        cell.strip()
        for cell in re.findall(r'class="field-age"><a [^>]*><span[^>]*>([^<]*)<', page)
    ]
    assert ages == ["3\xa0days", "1\xa0day", "0\xa0minutes"]
    # Four returns counted of the buyer's five deliveries this month.
    assert "4 of 5 (80.0 %)" in page
    assert page.count("Converted first") == 1
    # "Wrong number" calls for the phone check; the factory's phone is valid.
    assert "Phone: contradicts" in page
    assert "Returns to review" in page


def test_the_queue_filters_by_state_buyer_source_reason_and_age(staff_client, acme):
    zenith = reviewed(BuyerFactory(slug="zenith", name="Zenith"))
    other_source = SourceFactory(slug="redwood", name="Redwood")
    wrong = returned(delivered(acme), "Wrong number", days_ago=10)
    duplicate = returned(delivered(acme, source=other_source), "Duplicate")
    theirs = returned(delivered(zenith), "Wrong number", days_ago=2)
    disputed = returned(delivered(acme), "Not interested", days_ago=4)
    return_reject(feedback=disputed, note="Contacted twice")
    return_dispute(feedback=disputed, comment="Never reached them")

    def listed(**params) -> set[int]:
        response = staff_client.get(QUEUE, params)
        assert response.status_code == 200
        return {row.pk for row in queue_rows(response)}

    assert listed() == {wrong.pk, duplicate.pk, theirs.pk, disputed.pk}
    assert listed(state="disputed") == {disputed.pk}
    assert listed(state="pending") == {wrong.pk, duplicate.pk, theirs.pk}
    assert listed(buyer__id__exact=zenith.pk) == {theirs.pk}
    assert listed(source__id__exact=other_source.pk) == {duplicate.pk}
    assert listed(reason="Wrong number") == {wrong.pk, theirs.pk}
    assert listed(age="lt1") == {duplicate.pk}
    assert listed(age="1to3") == {theirs.pk}
    # The age is the return's: a dispute keeps its place in the queue.
    assert listed(age="3to7") == {disputed.pk}
    assert listed(age="gt7") == {wrong.pk}
    return_reject(feedback=wrong, note="No")
    assert wrong.pk in listed(state="rejected")
    assert wrong.pk not in listed()


def test_the_queue_costs_the_same_queries_for_more_rows(staff_client, acme):
    returned(delivered(acme))
    with CaptureQueriesContext(connection) as one:
        staff_client.get(QUEUE)
    for _ in range(4):
        returned(delivered(acme))
    with CaptureQueriesContext(connection) as five:
        response = staff_client.get(QUEUE)

    assert len(queue_rows(response)) == 5
    # "Not interested" calls for no evidence check: nothing is read per row.
    assert len(five) == len(one)


# Bulk decisions ----------------------------------------------------------------


def test_bulk_reject_asks_for_a_reason_then_rejects_each(
    staff_client, acme, staff_user
):
    first = returned(delivered(acme), days_ago=2)
    second = returned(delivered(acme))
    selected = {"action": "reject_selected", "_selected_action": [first.pk, second.pk]}

    confirm = staff_client.post(QUEUE, {**selected, "index": "0"})
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Reject 2 returns" in page
    assert first.delivery.event_id in page

    missing = staff_client.post(QUEUE, {**selected, "post": "yes", "note": " "})
    assert missing.status_code == 200
    assert "This field is required." in missing.content.decode()
    first.refresh_from_db()
    assert first.review_state == State.PENDING

    done = staff_client.post(
        QUEUE, {**selected, "post": "yes", "note": "Contacted on the day"}, follow=True
    )

    assert "Rejected 2 returns." in messages_of(done)
    for feedback in (first, second):
        feedback.refresh_from_db()
        assert feedback.review_state == State.REJECTED
        step = feedback.transitions.last()
        assert (step.from_state, step.to_state) == (State.PENDING, State.REJECTED)
        assert step.note == "Contacted on the day"
        assert step.user == staff_user
        assert step.actor == ReturnTransition.Actor.STAFF
    assert queue_rows(done) == []


def test_bulk_approve_skips_what_was_decided_meanwhile_with_the_reason(
    staff_client, acme
):
    waiting = returned(delivered(acme, price="40.00"))
    decided = returned(delivered(acme))
    selected = {
        "action": "approve_selected",
        "_selected_action": [waiting.pk, decided.pk],
    }
    confirm = staff_client.post(QUEUE, {**selected, "index": "0"})
    assert "Note (optional)" in confirm.content.decode()
    return_approve(feedback=decided)  # another reviewer, in between

    done = staff_client.post(
        QUEUE, {**selected, "post": "yes", "note": ""}, follow=True
    )

    shown = messages_of(done)
    assert "Approved 1 return." in shown
    skipped = next(m for m in shown if m.startswith("Skipped 1 return"))
    assert decided.delivery.event_id in skipped
    assert "This return is approved; it cannot be approved." in skipped
    waiting.refresh_from_db()
    assert waiting.review_state == State.APPROVED
    assert Credit.objects.get(feedback=waiting).amount == Decimal("40.00")


# One return's page ---------------------------------------------------------------


def test_the_review_page_shows_evidence_other_feedback_and_history(staff_client, acme):
    delivery = delivered(acme, phone_1="555", state="TX")
    conversion = FeedbackFactory(delivery=delivery, kind=Kind.CONVERSION, revenue=90)
    feedback = returned(delivery, "Wrong number")

    response = staff_client.get(review_url(feedback))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Return of {delivery.event_id}" in page
    assert "Converted first:" in page
    assert "Converted before this return" in page
    assert reverse("admin:feedback_feedback_change", args=[conversion.pk]) in page
    # "555" is no valid phone number: the check supports the reason.
    checks = response.context["checks"]
    assert [(c.name, c.verdict) for c, _ in checks] == [("phone_valid", "supports")]
    assert "not a valid number" in page
    assert "Requested" in page
    assert "Pending review" in page
    assert "Approve and credit" in page
    assert "1 of 1 (100.0 %)" in page


def test_a_return_is_approved_with_a_partial_credit(staff_client, acme, staff_user):
    feedback = returned(delivered(acme, price="25.00"))
    url = review_url(feedback)

    too_much = staff_client.post(url, {"decision": "approve", "credit_amount": "30"})
    assert too_much.status_code == 200
    assert "more than the delivery&#x27;s price, 25.00" in too_much.content.decode()

    response = staff_client.post(
        url,
        {"decision": "approve", "credit_amount": "10.50", "note": "Half, phone ok"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == url
    assert "Approved: 10.50 credited to Acme Insurance." in messages_of(response)
    feedback.refresh_from_db()
    assert feedback.review_state == State.APPROVED
    credit = Credit.objects.get(feedback=feedback)
    assert (credit.amount, credit.decided_by) == (Decimal("10.50"), staff_user)
    page = response.content.decode()
    assert "Half, phone ok" in page
    assert "Approve and credit" not in page
    assert "10.50" in page


def test_a_rejection_needs_a_reason_and_grants_no_credit(staff_client, acme):
    feedback = returned(delivered(acme))
    url = review_url(feedback)

    no_reason = staff_client.post(url, {"decision": "reject", "note": ""})
    with_credit = staff_client.post(
        url, {"decision": "reject", "note": "No", "credit_amount": "5"}
    )
    assert "Say why it is rejected" in no_reason.content.decode()
    assert "Only an approval grants a credit" in with_credit.content.decode()

    staff_client.post(url, {"decision": "reject", "note": "Sold as exclusive"})

    feedback.refresh_from_db()
    assert feedback.review_state == State.REJECTED
    assert not Credit.objects.exists()


def test_a_disputed_return_gets_its_final_decision_on_the_page(staff_client, acme):
    feedback = returned(delivered(acme, price="20.00"))
    return_reject(feedback=feedback, note="Contacted")
    return_dispute(feedback=feedback, comment="The number was disconnected")

    page = staff_client.get(review_url(feedback)).content.decode()
    assert "The number was disconnected" in page
    staff_client.post(review_url(feedback), {"decision": "approve", "note": "Fair"})

    feedback.refresh_from_db()
    assert feedback.review_state == State.APPROVED
    assert Credit.objects.get(feedback=feedback).amount == Decimal("20.00")


def test_deciding_a_decided_return_shows_the_409_reason(staff_client, acme):
    feedback = returned(delivered(acme))
    return_reject(feedback=feedback, note="Contacted")

    page = staff_client.get(review_url(feedback)).content.decode()
    assert "Approve and credit" not in page
    assert "This return is <strong>rejected</strong>" in page
    # A page opened before the rejection, posted after it:
    response = staff_client.post(
        review_url(feedback), {"decision": "approve"}, follow=True
    )

    assert "This return is rejected; it cannot be approved." in messages_of(response)
    feedback.refresh_from_db()
    assert feedback.review_state == State.REJECTED


def test_a_returns_feedback_page_links_to_its_review(staff_client, acme):
    feedback = returned(delivered(acme))
    feedback_page = reverse("admin:feedback_feedback_change", args=[feedback.pk])

    page = staff_client.get(feedback_page).content.decode()
    listed = staff_client.get(
        reverse("admin:feedback_feedback_changelist"), {"review_state": "pending"}
    )

    assert review_url(feedback) in page
    assert "Pending review" in page
    assert [row.pk for row in listed.context["cl"].result_list] == [feedback.pk]


# Permissions ---------------------------------------------------------------------


def test_seeing_the_queue_does_not_let_one_decide(client, acme):
    feedback = returned(delivered(acme))
    client.force_login(staff_with("view_returnreview"))

    queue = client.get(QUEUE)
    assert queue.status_code == 200
    assert "reject_selected" not in queue.content.decode()
    page = client.get(review_url(feedback))
    assert page.status_code == 200
    assert "Approve and credit" not in page.content.decode()
    assert "Can approve and reject returns" in page.content.decode()
    assert client.post(review_url(feedback), {"decision": "approve"}).status_code == 403
    client.post(
        QUEUE,
        {
            "action": "approve_selected",
            "_selected_action": [feedback.pk],
            "post": "yes",
        },
    )
    feedback.refresh_from_db()
    assert feedback.review_state == State.PENDING


def test_deciding_needs_the_decide_permission(client, acme):
    feedback = returned(delivered(acme))
    client.force_login(staff_with("decide_returns"))

    assert "reject_selected" in client.get(QUEUE).content.decode()
    client.post(review_url(feedback), {"decision": "reject", "note": "Contacted"})

    feedback.refresh_from_db()
    assert feedback.review_state == State.REJECTED


def test_staff_without_the_queue_permissions_are_refused(client, acme):
    feedback = returned(delivered(acme))
    client.force_login(staff_with("view_feedback"))

    assert client.get(QUEUE).status_code == 403
    assert client.get(review_url(feedback)).status_code == 403
    assert client.get(CREDITS).status_code == 403
    assert client.get(EXPORT).status_code == 403


def test_the_roles_give_deciding_to_seller_admins_and_returns_reviewers(client, acme):
    call_command("setup_roles", stdout=io.StringIO())
    feedback = returned(delivered(acme))

    def member(role):
        user = UserFactory(is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        return user

    for role, decides in (
        ("Seller admin", True),
        ("Returns reviewer", True),
        ("Support", False),
        ("Analyst", False),
    ):
        user = member(role)
        assert user.has_perm("feedback.decide_returns") is decides, role
        assert user.has_perm("feedback.view_returnreview"), role
        assert user.has_perm("feedback.view_credit"), role
    client.force_login(member("Returns reviewer"))
    assert client.get(QUEUE).status_code == 200
    client.post(review_url(feedback), {"decision": "approve"})
    feedback.refresh_from_db()
    assert feedback.review_state == State.APPROVED


def test_review_steps_are_append_only_in_the_admin(staff_client, acme):
    feedback = returned(delivered(acme))
    step = feedback.transitions.get()
    steps = reverse("admin:feedback_returntransition_changelist")

    assert staff_client.get(steps).status_code == 200
    assert (
        staff_client.get(reverse("admin:feedback_returntransition_add")).status_code
        == 403
    )
    change = reverse("admin:feedback_returntransition_change", args=[step.pk])
    assert staff_client.post(change, {"note": "edited"}).status_code == 403
    delete = reverse("admin:feedback_returntransition_delete", args=[step.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    step.refresh_from_db()
    assert step.note == "Requested"
    assert ReturnTransition._meta.default_permissions == ("view",)


# Evidence files ----------------------------------------------------------------


def disputed_with(acme, name, content, content_type):
    feedback = returned(delivered(acme))
    return_reject(feedback=feedback, note="Contacted")
    return_dispute(
        feedback=feedback,
        comment="See the file",
        evidence=SimpleUploadedFile(name, content, content_type=content_type),
    )
    step = feedback.transitions.get(to_state=State.DISPUTED)
    url = reverse("admin:feedback_returnreview_evidence", args=[feedback.pk, step.pk])
    return feedback, url


def test_staff_download_the_evidence_as_an_attachment(staff_client, acme):
    feedback, url = disputed_with(
        acme, "call log.pdf", b"%PDF-1.4 log", "application/pdf"
    )

    page = staff_client.get(review_url(feedback)).content.decode()
    assert url in page
    response = staff_client.get(url)

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 log"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "call log.pdf" in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_evidence_of_another_type_is_served_as_plain_bytes(staff_client, acme):
    _, url = disputed_with(acme, "page.html", b"<script>alert(1)</script>", "text/html")

    response = staff_client.get(url)

    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


def test_evidence_is_refused_to_buyers_and_staff_without_the_queue(
    client, acme, buyer_user
):
    feedback, url = disputed_with(acme, "a.png", b"\x89PNG....", "image/png")

    assert client.get(url).status_code == 302  # to the admin's login
    client.force_login(buyer_user)
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    client.force_login(staff_with("view_feedback"))
    assert client.get(url).status_code == 403
    other = returned(delivered(acme))
    step = feedback.transitions.get(to_state=State.DISPUTED)
    client.force_login(staff_with("view_returnreview"))
    wrong_return = reverse(
        "admin:feedback_returnreview_evidence", args=[other.pk, step.pk]
    )
    assert client.get(wrong_return).status_code == 404
    assert client.get(url).status_code == 200


# Credits -------------------------------------------------------------------------


def credited(buyer, *, price="25.00", amount=None, reason="Wrong number", source=None):
    feedback = returned(delivered(buyer, price=price, source=source), reason)
    return_approve(feedback=feedback, credit_amount=amount)
    return Credit.objects.get(feedback=feedback, voided_at__isnull=True)


def test_credits_list_totals_the_filtered_rows(staff_client, acme):
    zenith = reviewed(BuyerFactory(slug="zenith", name="Zenith"))
    credited(acme, price="25.00")
    credited(acme, price="30.00", amount="12.50")
    voided = credited(acme, price="99.00")
    credits_void(feedback=voided.feedback, reason="Source refused it")
    credited(zenith, price="40.00")

    everything = staff_client.get(CREDITS)
    theirs = staff_client.get(CREDITS, {"buyer__id__exact": acme.pk})
    live = staff_client.get(CREDITS, {"buyer__id__exact": acme.pk, "voided": "no"})

    assert everything.context["credits_total"] == Decimal("77.50")
    assert theirs.context["credits_total"] == Decimal("37.50")
    assert theirs.context["cl"].result_count == 3
    page = theirs.content.decode()
    assert "Total credited: <strong>37.50</strong>" in page
    assert "voided credits are not counted" in page
    assert live.context["credits_total"] == Decimal("37.50")
    month = timezone.localtime().strftime("%Y-%m")
    this_month = staff_client.get(CREDITS, {"month": month})
    assert this_month.context["credits_total"] == Decimal("77.50")
    assert staff_client.get(CREDITS, {"month": "2001-01"}).context[
        "credits_total"
    ] == Decimal("0.00")
    assert staff_client.get(reverse("admin:feedback_credit_add")).status_code == 403


def test_the_csv_is_ready_for_invoicing_and_formula_safe(
    staff_client, acme, staff_user
):
    zenith = reviewed(BuyerFactory(slug="zenith", name="Zenith"))
    plain = credited(acme, price="25.00", reason="Wrong number")
    hostile = credited(acme, price="30.00", amount="12.50", reason="=HYPERLINK(1)")
    voided = credited(acme, price="99.00")
    credits_void(feedback=voided.feedback, reason="Source refused it")
    credited(zenith)
    by_hand = returned(delivered(acme, price="8.00"), "@SUM(A1)")
    return_approve(feedback=by_hand, user=staff_user)
    month = timezone.localtime().strftime("%Y-%m")

    listing = staff_client.get(CREDITS, {"buyer__id__exact": acme.pk, "month": month})
    assert listing.context["export_url"].startswith(EXPORT + "?")
    response = staff_client.get(listing.context["export_url"])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        f'filename="credits-acme-insurance-{month}.csv"'
        in response["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "buyer",
        "month",
        "delivery event id",
        "reference",
        "lead id",
        "reason",
        "amount",
        "decided at",
        "decided by",
    ]
    body = rows[1:]
    assert len(body) == 3  # the voided credit and the other buyer's are left out
    first = body[0]
    assert first[:7] == [
        "Acme Insurance",
        month,
        plain.delivery.event_id,
        plain.delivery.reference,
        plain.feedback.lead.public_id,
        "Wrong number",
        "25.00",
    ]
    assert body[1][5] == "'=HYPERLINK(1)"
    assert body[1][6] == "12.50"
    assert body[2][5] == "'@SUM(A1)"
    assert body[2][8] == staff_user.username
    assert all(
        not cell.startswith(("=", "+", "-", "@")) for row in body for cell in row
    )
    assert hostile.delivery.event_id in response.content.decode()


def test_credits_approved_at_intake_name_the_policy_as_decider(staff_client, buyer):
    delivery = delivered(buyer, price="25.00")
    feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": "Bad"},
        channel=Feedback.Channel.API,
    )

    page = staff_client.get(CREDITS).content.decode()

    assert "Policy, at intake" in page


# Policies and forwarding configs -------------------------------------------------


def test_the_buyer_page_sets_a_return_policy_with_review_and_cap(staff_client):
    response = staff_client.post(
        reverse("admin:feedback_buyer_add"),
        buyer_form(
            **policy_rows(
                {
                    "kind": "return",
                    "enabled": "on",
                    "max_age_days": "30",
                    "review": "rules",
                    "auto_approve": '{"op": "and", "rules": [{"lhv": '
                    '"check.phone_valid", "op": "is equal to", "rhv": "false"}]}',
                    "cap_percent": "10",
                    "cap_min": "5",
                    "credit_percent": "50",
                    "dispute_days": "14",
                },
                {"kind": "conversion", "enabled": "on", "max_age_days": "90"},
            )
        ),
    )

    assert response.status_code == 302
    policy = BuyerPolicy.objects.get(kind=Kind.RETURN)
    assert (policy.review, policy.cap_percent, policy.cap_min) == (
        "rules",
        Decimal("10"),
        5,
    )
    assert (policy.credit_percent, policy.dispute_days) == (Decimal("50"), 14)
    assert policy.auto_approve["rules"][0]["lhv"] == "check.phone_valid"
    conversion = BuyerPolicy.objects.get(kind=Kind.CONVERSION)
    assert (conversion.review, conversion.cap_percent) == ("auto", None)
    page = staff_client.get(
        reverse("admin:feedback_buyer_change", args=[policy.buyer_id])
    ).content.decode()
    assert "Returns resolution" in page
    assert "returns-resolution" in page


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"kind": "conversion", "cap_percent": "10"},
            "Only return policies use this: set it back to empty",
        ),
        (
            {"kind": "status", "review": "manual"},
            "Only return policies use this: set it back to auto",
        ),
        (
            {"kind": "return", "review": "rules"},
            "Rules review needs auto-approve rules",
        ),
        (
            {
                "kind": "return",
                "auto_approve": '{"op": "and", "rules": [{"lhv": "feedback.reason", '
                '"op": "is between", "rhv": "z-a"}]}',
                "review": "rules",
            },
            "rules[0].rhv: invalid range",
        ),
        (
            {"kind": "return", "auto_approve": '{"op": "and", "rules": []}'},
            "Only rules review reads these",
        ),
        ({"kind": "return", "cap_min": "5"}, "A floor needs a cap"),
    ],
)
def test_policy_settings_are_checked(staff_client, row, message):
    response = staff_client.post(
        reverse("admin:feedback_buyer_add"),
        buyer_form(**policy_rows({"max_age_days": "30", **row})),
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not BuyerPolicy.objects.exists()


def test_a_return_config_may_forward_on_approval_only(staff_client):
    source = SourceFactory()
    add = reverse("admin:sources_feedbackconfig_add")

    conversion = staff_client.post(
        add, config_form(source, kind="conversion", forward_on="approved")
    )
    sync = staff_client.post(add, config_form(source, forward_on="approved", sync="on"))
    assert "Only returns wait for a review" in conversion.content.decode()
    assert "cannot send synchronously" in sync.content.decode()
    assert not FeedbackConfig.objects.exists()

    saved = staff_client.post(add, config_form(source, forward_on="approved"))
    unsaid = staff_client.post(add, config_form(source, kind="conversion"))

    assert saved.status_code == 302
    assert unsaid.status_code == 302
    assert dict(FeedbackConfig.objects.values_list("kind", "forward_on")) == {
        "return": "approved",
        "conversion": "accepted",
    }
    page = staff_client.get(
        reverse(
            "admin:sources_feedbackconfig_change",
            args=[FeedbackConfig.objects.get(kind="return").pk],
        )
    ).content.decode()
    assert "Forward returns when" in page
