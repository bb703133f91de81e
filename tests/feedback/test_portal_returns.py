"""The portal's returns and credits through Django's test client: the list (its
own buyer's only), a return's history, disputing a rejection with an evidence
file (checked by content and size), the dispute window, the evidence download,
the monthly allowance, and credits with their CSV.

Data is made the way it happens: deliveries recorded by the events service,
returns through feedback_receive, decisions through the returns services."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback import months
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerPolicy, Feedback
from feedback.portal.returns import DisputeForm
from feedback.returns.models import ReturnTransition
from feedback.returns.services import (
    return_approve,
    return_decide_dispute,
    return_reject,
)
from feedback.services import DeliveryInput, delivery_event_record
from sources.models import Kind
from tests.factories import BuyerMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/portal/returns/"
CREDITS_URL = "/portal/credits/"
CSV_URL = "/portal/credits.csv"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(64)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def evidence_storage(tmp_path, monkeypatch):
    """Evidence files go to the test's own directory, not the project's var/."""
    field = ReturnTransition._meta.get_field("evidence")
    storage = FileSystemStorage(location=tmp_path / "evidence", base_url=None)
    monkeypatch.setattr(field, "storage", storage)
    return storage


@pytest.fixture
def reviewer(db):
    return UserFactory(
        username="jane.reviewer", email="jane@seller.example", is_staff=True
    )


@pytest.fixture
def policy(buyer):
    return BuyerPolicy.objects.create(
        buyer=buyer, kind=Kind.RETURN, review=BuyerPolicy.Review.MANUAL
    )


@pytest.fixture
def portal(client, buyer_user):
    client.force_login(buyer_user)
    return client


_references = iter(range(1000, 100000))


def deliver(buyer, *, flow="auto", days_ago=0, price="25.00", first_name="Pat"):
    event, created = delivery_event_record(
        data=DeliveryInput(
            buyer=buyer.slug,
            source="bluesky",
            flow=flow,
            delivered_at=timezone.now() - timedelta(days=days_ago),
            price=Decimal(price),
            reference=f"CRM-{next(_references)}",
            lead_data={"first_name": first_name, "last_name": "Tester"},
        )
    )
    assert created
    return event


def request_return(buyer, user, delivery, *, reason="Wrong number", note=""):
    result = feedback_receive(
        buyer=buyer,
        data={
            "event_id": delivery.event_id,
            "type": "return",
            "reason": reason,
            "note": note,
        },
        channel=Feedback.Channel.PORTAL,
        user=user,
    )
    assert result.status == ReceiveStatus.ACCEPTED, result.reason
    return result.feedback


def rejected_return(buyer, user, reviewer, **kwargs):
    feedback = request_return(buyer, user, deliver(buyer, **kwargs))
    return return_reject(
        feedback=feedback, user=reviewer, note="The phone number answers."
    )


def detail_url(feedback):
    return f"{LIST_URL}{feedback.public_id}/"


def dispute(client, feedback, *, comment="It rang out twice.", upload=None):
    data = {"comment": comment}
    if upload is not None:
        data["evidence"] = upload
    return client.post(f"{detail_url(feedback)}dispute/", data)


def png(name="call-log.png", content=PNG, content_type="image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


# The list -----------------------------------------------------------------------


def test_the_list_shows_the_buyers_own_returns_with_state_and_decision(
    portal, buyer, buyer_user, other_buyer, other_buyer_user, reviewer, policy
):
    pending = request_return(buyer, buyer_user, deliver(buyer, first_name="Pending"))
    rejected = rejected_return(buyer, buyer_user, reviewer, first_name="Rejected")
    approved = return_approve(
        feedback=request_return(buyer, buyer_user, deliver(buyer, first_name="Kept")),
        user=reviewer,
        note="Confirmed disconnected",
    )
    BuyerPolicy.objects.create(
        buyer=other_buyer, kind=Kind.RETURN, review=BuyerPolicy.Review.MANUAL
    )
    foreign = request_return(
        other_buyer, other_buyer_user, deliver(other_buyer, first_name="Foreign")
    )

    response = portal.get(LIST_URL)
    assert response.status_code == 200
    page = response.content.decode()
    for feedback in (pending, rejected, approved):
        assert detail_url(feedback) in page
    assert detail_url(foreign) not in page
    assert "Foreign" not in page
    assert "Pending review" in page
    assert 'badge-review-rejected">Rejected<' in page
    assert 'badge-review-approved">Approved<' in page
    assert "The phone number answers." in page  # the decision's reason
    assert "Confirmed disconnected" in page
    assert "25.00" in page  # the approval's credit
    assert "jane" not in page  # who decided is never a staff account

    response = portal.get(LIST_URL, {"state": "rejected"})
    page = response.content.decode()
    assert detail_url(rejected) in page
    assert detail_url(pending) not in page
    assert detail_url(approved) not in page


def test_another_buyers_return_is_not_found(
    portal, other_buyer, other_buyer_user, reviewer
):
    BuyerPolicy.objects.create(
        buyer=other_buyer, kind=Kind.RETURN, review=BuyerPolicy.Review.MANUAL
    )
    foreign = rejected_return(other_buyer, other_buyer_user, reviewer)
    assert portal.get(detail_url(foreign)).status_code == 404
    response = dispute(portal, foreign, upload=png())
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.review_state == Feedback.ReviewState.REJECTED


def test_a_person_in_two_buyers_sees_the_returns_of_the_buyer_they_work_in(
    client, buyer, other_buyer, reviewer
):
    person = UserFactory(username="carol")
    BuyerMembershipFactory(user=person, buyer=buyer)
    BuyerMembershipFactory(user=person, buyer=other_buyer)
    for each in (buyer, other_buyer):
        BuyerPolicy.objects.create(
            buyer=each, kind=Kind.RETURN, review=BuyerPolicy.Review.MANUAL
        )
    acme = request_return(buyer, person, deliver(buyer))
    zenith = request_return(other_buyer, person, deliver(other_buyer))
    client.force_login(person)

    page = client.get(LIST_URL).content.decode()  # Acme Insurance sorts first
    assert detail_url(acme) in page
    assert detail_url(zenith) not in page
    assert client.get(detail_url(zenith)).status_code == 404

    client.post("/portal/switch/", {"buyer": other_buyer.slug})
    page = client.get(LIST_URL).content.decode()
    assert detail_url(zenith) in page
    assert detail_url(acme) not in page


def test_the_list_pages_by_keyset(portal, buyer, buyer_user, policy, monkeypatch):
    monkeypatch.setattr("feedback.portal.returns.PAGE_SIZE", 2)
    returns = [request_return(buyer, buyer_user, deliver(buyer)) for _ in range(3)]
    first = portal.get(LIST_URL).content.decode()
    assert detail_url(returns[2]) in first
    assert detail_url(returns[1]) in first
    assert detail_url(returns[0]) not in first
    older = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = portal.get(LIST_URL + older).content.decode()
    assert detail_url(returns[0]) in second
    assert detail_url(returns[1]) not in second


def test_the_list_costs_the_same_queries_for_few_returns_or_many(
    portal, buyer, buyer_user, reviewer, policy
):
    def queries_for_list():
        with CaptureQueriesContext(connection) as queries:
            assert portal.get(LIST_URL).status_code == 200
        return len(queries)

    return_approve(
        feedback=request_return(buyer, buyer_user, deliver(buyer)), user=reviewer
    )
    queries_for_list()  # the session's first request reads more than the list
    few = queries_for_list()
    for _ in range(5):
        rejected_return(buyer, buyer_user, reviewer)
        return_approve(
            feedback=request_return(buyer, buyer_user, deliver(buyer)), user=reviewer
        )
    assert queries_for_list() == few


# A return's page and its history ------------------------------------------------


def test_the_history_says_who_in_words_and_never_names_staff(
    portal, buyer, buyer_user, reviewer, policy
):
    colleague = UserFactory(username="dave")
    BuyerMembershipFactory(user=colleague, buyer=buyer)
    feedback = request_return(buyer, colleague, deliver(buyer), note="Never answered")
    return_reject(feedback=feedback, user=reviewer, note="The phone number answers.")
    dispute(portal, feedback, comment="It rang out twice.")

    page = portal.get(detail_url(feedback)).content.decode()
    assert "dave at Acme Insurance" in page
    assert "Requested" in page
    assert "Reviewer" in page
    assert "You" in page
    assert "jane" not in page
    assert "It rang out twice." in page
    assert "Never answered" in page
    assert "The phone number answers." in page
    assert page.index("Pending review") < page.index("It rang out twice.")
    assert f"/portal/deliveries/{feedback.delivery.event_id}/" in page

    delivery_page = portal.get(f"/portal/deliveries/{feedback.delivery.event_id}/")
    assert detail_url(feedback) in delivery_page.content.decode()


def test_a_return_approved_before_reviews_existed_reads_as_such(
    portal, buyer, buyer_user
):
    # What migration 0014 left: approved at intake, with no review step.
    feedback = request_return(buyer, buyer_user, deliver(buyer))
    ReturnTransition.objects.filter(feedback=feedback).delete()

    page = portal.get(LIST_URL).content.decode()
    assert "Approved when received" in page
    assert "Not decided yet" not in page
    page = portal.get(detail_url(feedback)).content.decode()
    assert "No review steps are recorded" in page


def test_a_pending_return_offers_no_dispute(portal, buyer, buyer_user, policy):
    feedback = request_return(buyer, buyer_user, deliver(buyer))
    page = portal.get(detail_url(feedback)).content.decode()
    assert "Not decided yet" in page
    assert 'name="comment"' not in page
    response = dispute(portal, feedback)
    assert response.status_code == 409
    assert "This return is pending; it cannot be disputed." in (
        response.content.decode()
    )


# Disputes -----------------------------------------------------------------------


def test_a_buyer_disputes_a_rejection_with_a_png(
    portal, buyer, buyer_user, reviewer, policy, evidence_storage
):
    feedback = rejected_return(buyer, buyer_user, reviewer)
    page = portal.get(detail_url(feedback)).content.decode()
    assert 'name="comment"' in page
    assert 'enctype="multipart/form-data"' in page
    deadline = ReturnTransition.objects.get(
        feedback=feedback, to_state="rejected"
    ).created_at + timedelta(days=7)
    assert timezone.localtime(deadline).strftime("%b %-d, %Y %H:%M") in page
    assert "PDF, PNG or JPEG file of at most 5.0\xa0MB" in page

    response = dispute(portal, feedback, upload=png("call log.png"))
    assert response.status_code == 302
    assert response["Location"] == detail_url(feedback)
    feedback.refresh_from_db()
    assert feedback.review_state == Feedback.ReviewState.DISPUTED
    step = ReturnTransition.objects.get(feedback=feedback, to_state="disputed")
    assert step.note == "It rang out twice."
    assert step.user == (buyer_user)
    assert step.evidence_name == "call log.png"
    assert step.evidence_type == "image/png"
    assert evidence_storage.exists(step.evidence.name)

    page = portal.get(detail_url(feedback)).content.decode()
    assert "Dispute sent" in page
    assert 'badge-review-disputed">Disputed<' in page
    assert "You disputed this rejection on" in page
    assert 'name="comment"' not in page
    assert f"{detail_url(feedback)}evidence/3/" in page
    assert "call log.png" in page


def test_a_dispute_needs_a_comment_and_takes_a_pdf(
    portal, buyer, buyer_user, reviewer, policy
):
    feedback = rejected_return(buyer, buyer_user, reviewer)
    response = dispute(portal, feedback, comment="  ")
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    feedback.refresh_from_db()
    assert feedback.review_state == Feedback.ReviewState.REJECTED

    upload = SimpleUploadedFile("letter", PDF, content_type="text/plain")
    assert dispute(portal, feedback, upload=upload).status_code == 302
    step = ReturnTransition.objects.get(feedback=feedback, to_state="disputed")
    # Named and typed by its content, whatever the browser said.
    assert step.evidence_name == "letter.pdf"
    assert step.evidence_type == "application/pdf"


def test_an_exe_renamed_png_is_refused_by_its_content(
    portal, buyer, buyer_user, reviewer, policy, evidence_storage
):
    feedback = rejected_return(buyer, buyer_user, reviewer)
    response = dispute(portal, feedback, upload=png("proof.png", content=EXE))
    assert response.status_code == 400
    page = response.content.decode()
    assert "This file is not a PDF, PNG or JPEG" in page
    assert "It rang out twice." in page  # the comment is kept for the retry
    feedback.refresh_from_db()
    assert feedback.review_state == Feedback.ReviewState.REJECTED
    assert not ReturnTransition.objects.filter(to_state="disputed").exists()
    assert not [p for p in Path(evidence_storage.location).rglob("*") if p.is_file()]


def test_a_too_large_file_is_refused_naming_the_limit(
    portal, buyer, buyer_user, reviewer, policy, settings
):
    settings.LEADBACK_EVIDENCE_MAX_BYTES = 1024
    feedback = rejected_return(buyer, buyer_user, reviewer)
    response = dispute(portal, feedback, upload=png(content=PNG + bytes(2048)))
    assert response.status_code == 413
    page = response.content.decode()
    assert "The evidence file is too large: at most 1.0\xa0KB is allowed." in page
    feedback.refresh_from_db()
    assert feedback.review_state == Feedback.ReviewState.REJECTED

    # Just under the limit is fine.
    assert dispute(portal, feedback, upload=png(content=PNG)).status_code == 302


def test_the_form_checks_the_size_of_a_file_it_is_given(settings):
    settings.LEADBACK_EVIDENCE_MAX_BYTES = 100
    form = DisputeForm(
        {"comment": "See attached"}, {"evidence": png(content=PNG + bytes(200))}
    )
    assert not form.is_valid()
    assert form.errors["evidence"] == [
        "The evidence file is too large: at most 100\xa0bytes is allowed. "
        "This one is 280\xa0bytes."
    ]


def test_after_the_window_there_is_no_form_and_the_service_refusal_is_shown(
    portal, buyer, buyer_user, reviewer, policy
):
    policy.dispute_days = 3
    policy.save()
    feedback = rejected_return(buyer, buyer_user, reviewer)
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)):
        page = portal.get(detail_url(feedback)).content.decode()
        assert 'name="comment"' not in page
        assert "The 3 days to dispute this rejection ended on" in page

        response = dispute(portal, feedback)
    assert response.status_code == 409
    assert "The 3 days to dispute this rejection have passed." in (
        response.content.decode()
    )
    feedback.refresh_from_db()
    assert feedback.review_state == Feedback.ReviewState.REJECTED


def test_a_second_dispute_is_refused(portal, buyer, buyer_user, reviewer, policy):
    feedback = rejected_return(buyer, buyer_user, reviewer)
    assert dispute(portal, feedback).status_code == 302

    response = dispute(portal, feedback)  # while the first waits
    assert response.status_code == 409
    assert "This return is disputed; it cannot be disputed." in (
        response.content.decode()
    )

    return_decide_dispute(
        feedback=feedback, decision="reject", user=reviewer, note="Still answers."
    )
    page = portal.get(detail_url(feedback)).content.decode()
    assert 'name="comment"' not in page
    assert "You disputed this return once already" in page
    response = dispute(portal, feedback)
    assert response.status_code == 409
    assert "disputed once already; the second decision is final" in (
        response.content.decode()
    )


# Evidence downloads -------------------------------------------------------------


def _disputed_with_evidence(portal, buyer, buyer_user, reviewer):
    feedback = rejected_return(buyer, buyer_user, reviewer)
    assert dispute(portal, feedback, upload=png("call-log.png")).status_code == 302
    return feedback, f"{detail_url(feedback)}evidence/3/"


def test_evidence_is_a_download_for_the_buyers_people(
    portal, buyer, buyer_user, reviewer, policy
):
    feedback, url = _disputed_with_evidence(portal, buyer, buyer_user, reviewer)
    response = portal.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="call-log.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]

    assert portal.get(f"{detail_url(feedback)}evidence/2/").status_code == 404
    assert portal.get(f"{detail_url(feedback)}evidence/9/").status_code == 404


def test_evidence_is_not_found_for_another_buyers_people(
    client, portal, buyer, buyer_user, other_buyer_user, reviewer, policy
):
    _, url = _disputed_with_evidence(portal, buyer, buyer_user, reviewer)
    client.force_login(other_buyer_user)
    assert client.get(url).status_code == 404


def test_evidence_is_served_to_staff_who_read_review_steps(
    client, portal, buyer, buyer_user, reviewer, staff_user, policy
):
    _, url = _disputed_with_evidence(portal, buyer, buyer_user, reviewer)
    client.force_login(reviewer)  # staff without the permission
    assert client.get(url).status_code == 404
    client.force_login(staff_user)
    assert client.get(url).status_code == 200
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


# The allowance ------------------------------------------------------------------


def test_a_capped_buyer_sees_this_and_the_previous_two_months_per_scope(
    portal, buyer, buyer_user, reviewer, policy
):
    policy.cap_percent = Decimal("10")
    policy.cap_min = 20
    policy.save()
    home = deliver(buyer, flow="home")
    BuyerPolicy.objects.create(
        buyer=buyer,
        kind=Kind.RETURN,
        flow=home.flow,
        review=BuyerPolicy.Review.MANUAL,
        cap_percent=Decimal("50"),
        cap_min=1,
    )
    deliveries = [deliver(buyer) for _ in range(3)]
    request_return(buyer, buyer_user, deliveries[0])
    return_approve(
        feedback=request_return(buyer, buyer_user, deliveries[1]), user=reviewer
    )
    return_reject(
        feedback=request_return(buyer, buyer_user, deliveries[2]), user=reviewer
    )
    request_return(buyer, buyer_user, home)

    page = portal.get(LIST_URL).content.decode()
    this_month = months.month_of(timezone.now())
    previous = (this_month - timedelta(days=1)).replace(day=1)
    before = (previous - timedelta(days=1)).replace(day=1)
    assert "Your return allowance" in page
    assert (
        f"<strong>2 of 20</strong> returns used for {this_month:%B %Y} deliveries "
        "(18 left)" in page
    )
    assert f"<strong>0 of 20</strong> returns used for {previous:%B %Y}" in page
    assert f"<strong>0 of 20</strong> returns used for {before:%B %Y}" in page
    assert "All flows" in page
    assert "<h3>Home</h3>" in page
    assert (
        f"<strong>1 of 1</strong> return used for {this_month:%B %Y} deliveries "
        "(0 left)" in page
    )


def test_an_uncapped_buyer_sees_no_allowance(portal, buyer, buyer_user, policy):
    request_return(buyer, buyer_user, deliver(buyer))
    assert "Your return allowance" not in portal.get(LIST_URL).content.decode()


# Credits ------------------------------------------------------------------------


def test_credits_show_the_months_rows_and_total_and_download_as_safe_csv(
    portal, buyer, buyer_user, other_buyer, other_buyer_user, reviewer, policy
):
    plain = request_return(buyer, buyer_user, deliver(buyer, first_name="Pat"))
    return_approve(feedback=plain, user=reviewer)
    hostile = request_return(
        buyer,
        buyer_user,
        deliver(buyer, first_name="@SUM(1+1)", price="40.00"),
        reason='=HYPERLINK("http://evil.example","x")',
    )
    return_approve(feedback=hostile, user=reviewer, credit_amount="12.50")
    BuyerPolicy.objects.create(buyer=other_buyer, kind=Kind.RETURN)  # auto-approve
    request_return(other_buyer, other_buyer_user, deliver(other_buyer, price="99.00"))

    response = portal.get(CREDITS_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Total for {timezone.localtime():%B %Y}" in page
    assert "<strong>37.50</strong>" in page
    assert "2 credits" in page
    assert "99.00" not in page
    assert detail_url(plain) in page

    response = portal.get(CSV_URL, {"month": f"{timezone.localtime():%Y-%m}"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="credits-acme-insurance-'
        f'{timezone.localtime():%Y-%m}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 2
    by_id = {row["return_id"]: row for row in rows}
    assert by_id[str(plain.public_id)]["amount"] == "25.00"
    bad = by_id[str(hostile.public_id)]
    assert bad["amount"] == "12.50"
    assert bad["reason"] == '\'=HYPERLINK("http://evil.example","x")'
    assert bad["lead"] == "'@SUM(1+1) Tester"
    assert bad["event_id"] == hostile.delivery.event_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", bad["credited_at"])
    assert bad["source"] == "Bluesky"


def test_credits_filter_by_month_and_default_to_this_one(
    portal, buyer, buyer_user, reviewer, policy
):
    now = timezone.now()
    earlier = now - timedelta(days=40)
    with time_machine.travel(earlier - timedelta(days=1)):
        old = request_return(buyer, buyer_user, deliver(buyer))
    with time_machine.travel(earlier):
        return_approve(feedback=old, user=reviewer)
    recent = request_return(buyer, buyer_user, deliver(buyer, price="10.00"))
    return_approve(feedback=recent, user=reviewer)

    page = portal.get(CREDITS_URL).content.decode()
    assert detail_url(recent) in page
    assert detail_url(old) not in page
    assert "<strong>10.00</strong>" in page
    old_month = f"{timezone.localtime(earlier):%Y-%m}"
    assert f'<option value="{old_month}">' in page

    page = portal.get(CREDITS_URL, {"month": old_month}).content.decode()
    assert detail_url(old) in page
    assert detail_url(recent) not in page
    assert "<strong>25.00</strong>" in page
    assert f"credits.csv?month={old_month}" in page
    rows = list(
        csv.DictReader(
            io.StringIO(portal.get(CSV_URL, {"month": old_month}).content.decode())
        )
    )
    assert [row["return_id"] for row in rows] == [str(old.public_id)]

    response = portal.get(CREDITS_URL, {"month": "1999-13"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


def test_the_nav_has_returns_and_credits(portal):
    page = portal.get(CREDITS_URL).content.decode()
    assert '<a href="/portal/returns/">Returns</a>' in page
    assert '<a href="/portal/credits/" aria-current="page">Credits</a>' in page
