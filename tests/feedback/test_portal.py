"""The buyer portal through Django's test client: sign-in, the deliveries list
(filters, search, keyset pages), a lead's page, feedback for one lead or a
selection, API keys and the integration page."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.models import ApiKey, Feedback
from feedback.portal import views as portal_views
from sources.models import Kind
from tests.factories import (
    BuyerFactory,
    BuyerMembershipFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    FlowFactory,
    LeadFactory,
    SourceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-9"
LIST_URL = "/portal/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def portal(client, buyer_user):
    client.force_login(buyer_user)
    return client


def delivery(buyer, *, ago_days=0, **kwargs):
    return DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=ago_days), **kwargs
    )


def listed_event_ids(response):
    return re.findall(
        r'name="event_ids" value="([0-9a-f]{24})"', response.content.decode()
    )


# Sign-in ------------------------------------------------------------------------


def test_login_lands_on_the_deliveries_and_logout_ends_the_session(client, buyer_user):
    response = client.get(LIST_URL)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={LIST_URL}"

    page = client.get(response["Location"])
    assert 'for="id_username"' in page.content.decode()
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD, "next": LIST_URL},
    )
    assert response.status_code == 302
    assert response["Location"] == LIST_URL
    assert client.get(LIST_URL).status_code == 200

    response = client.post("/accounts/logout/")
    assert response.status_code == 200
    assert "You are logged out" in response.content.decode()
    assert client.get(LIST_URL).status_code == 302


def test_wrong_password_says_so_and_does_not_log_in(client, buyer_user):
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "nope-nope-nope"}
    )
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert client.get(LIST_URL).status_code == 302


def test_password_reset_by_email_sets_a_new_password(client, buyer_user):
    response = client.post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Reset your Leadback password"
    assert message.to == ["alice@example.com"]
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+)", message.body).group(1)

    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    response = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a-brand-new-pw-77", "new_password2": "a-brand-new-pw-77"},
    )
    assert response.status_code == 302
    login = {"username": "alice", "password": "a-brand-new-pw-77"}
    assert Client().post("/accounts/login/", login).status_code == 302
    login["password"] = PASSWORD
    assert Client().post("/accounts/login/", login).status_code == 200  # refused


def test_a_user_without_a_buyer_is_told_so(client):
    client.force_login(UserFactory(username="loner"))
    response = client.get(LIST_URL)
    assert response.status_code == 403
    assert "not a member of an active buyer" in response.content.decode()


def test_an_inactive_buyer_locks_its_people_out(portal, buyer):
    buyer.is_active = False
    buyer.save()
    assert portal.get(LIST_URL).status_code == 403


def test_a_user_of_two_buyers_works_in_one_at_a_time(client, buyer, other_buyer):
    user = UserFactory(username="carol")
    BuyerMembershipFactory(user=user, buyer=buyer)
    BuyerMembershipFactory(user=user, buyer=other_buyer)
    mine = delivery(buyer)
    theirs = delivery(other_buyer)
    client.force_login(user)

    first = client.get(LIST_URL)
    assert listed_event_ids(first) == [mine.event_id]  # Acme sorts first
    assert 'name="buyer"' in first.content.decode()  # the switcher shows

    response = client.post("/portal/switch/", {"buyer": other_buyer.slug})
    assert response.status_code == 302
    assert listed_event_ids(client.get(LIST_URL)) == [theirs.event_id]
    assert client.get(f"/portal/deliveries/{mine.event_id}/").status_code == 404

    stranger = BuyerFactory(slug="stranger")
    assert client.post("/portal/switch/", {"buyer": stranger.slug}).status_code == 404


def test_one_buyer_shows_no_switcher(portal):
    assert 'name="buyer"' not in portal.get(LIST_URL).content.decode()


# The deliveries list --------------------------------------------------------------


def test_list_is_newest_first_and_pages_by_keyset_without_counting(
    portal, buyer, monkeypatch
):
    monkeypatch.setattr(portal_views, "PAGE_SIZE", 3)
    deliveries = [delivery(buyer, ago_days=days) for days in range(8)]
    expected = [d.event_id for d in deliveries]  # 0 days ago is the newest

    with CaptureQueriesContext(connection) as queries:
        first = portal.get(LIST_URL)
    assert not [q for q in queries if "COUNT(" in q["sql"].upper()]
    assert listed_event_ids(first) == expected[:3]
    body = first.content.decode()
    assert "Newer" not in body

    older = re.search(r'href="\?older=([^"]+)"', body).group(1)
    second = portal.get(LIST_URL, {"older": older.replace("%2D", "-")})
    assert listed_event_ids(second) == expected[3:6]
    third_token = re.search(r'href="\?older=([^"]+)"', second.content.decode()).group(1)
    third = portal.get(LIST_URL, {"older": third_token})
    assert listed_event_ids(third) == expected[6:]
    assert "Older" not in third.content.decode()

    newer = re.search(r'href="\?newer=([^"]+)"', third.content.decode()).group(1)
    back = portal.get(LIST_URL, {"newer": newer})
    assert listed_event_ids(back) == expected[3:6]
    older_again = re.search(r'href="\?older=([^"]+)"', back.content.decode()).group(1)
    assert (
        listed_event_ids(portal.get(LIST_URL, {"older": older_again})) == expected[6:]
    )
    newer_again = re.search(r'href="\?newer=([^"]+)"', back.content.decode()).group(1)
    assert (
        listed_event_ids(portal.get(LIST_URL, {"newer": newer_again})) == expected[:3]
    )


def test_deliveries_at_the_same_instant_are_neither_lost_nor_repeated(
    portal, buyer, monkeypatch
):
    monkeypatch.setattr(portal_views, "PAGE_SIZE", 2)
    now = timezone.now()
    same = sorted(
        (DeliveryEventFactory(buyer=buyer, delivered_at=now) for _ in range(5)),
        key=lambda d: d.event_id,
        reverse=True,
    )
    seen: list[str] = []
    params: dict[str, str] = {}
    for _ in range(5):
        response = portal.get(LIST_URL, params)
        seen += listed_event_ids(response)
        match = re.search(r'href="\?older=([^"]+)"', response.content.decode())
        if match is None:
            break
        params = {"older": match.group(1)}
    assert seen == [d.event_id for d in same]


def test_a_mangled_cursor_shows_the_first_page(portal, buyer):
    newest = delivery(buyer)
    response = portal.get(LIST_URL, {"older": "99999999999999999999999-zz"})
    assert listed_event_ids(response) == [newest.event_id]


def test_list_queries_stay_constant_whatever_the_page_holds(
    portal, buyer, django_assert_max_num_queries
):
    portal.get(LIST_URL)  # the first request stores the current buyer in the session
    for days in range(30):
        made = delivery(buyer, ago_days=days)
        FeedbackFactory(delivery=made, kind=Kind.RETURN, reason="Wrong number")
    # Session, user, buyers, the page, usual reasons, the flow filter's choices.
    with django_assert_max_num_queries(6):
        response = portal.get(LIST_URL)
    assert len(listed_event_ids(response)) == 30


def test_list_shows_feedback_status_per_delivery(portal, buyer):
    converted = delivery(buyer, ago_days=1)
    FeedbackFactory(delivery=converted, kind=Kind.CONVERSION)
    returned = delivery(buyer, ago_days=2)
    FeedbackFactory(delivery=returned, kind=Kind.RETURN)
    delivery(buyer, ago_days=3)
    body = portal.get(LIST_URL).content.decode()
    rows = body.split("<tr>")[2:]
    assert "badge-converted" in rows[0]
    assert "badge-returned" in rows[1]
    assert "No feedback" in rows[2]


@pytest.fixture
def assorted(buyer):
    """Deliveries that each match one filter."""
    flow = FlowFactory(slug="auto-insurance", name="Auto insurance")
    made = {
        "none": delivery(buyer, ago_days=1, reference="CRM-NONE"),
        "converted": delivery(buyer, ago_days=2),
        "returned": delivery(buyer, ago_days=3),
        "refused": delivery(buyer, ago_days=4),
        "old": delivery(buyer, ago_days=40),
        "flow": DeliveryEventFactory(
            buyer=buyer,
            lead=LeadFactory(
                flow=flow,
                data={"email": "Jane.Doe@Example.com", "phone_1": "(512) 789-1111"},
                email_normalized="jane.doe@example.com",
                phone_normalized="5127891111",
            ),
            delivered_at=timezone.now() - timedelta(days=5),
        ),
    }
    FeedbackFactory(delivery=made["converted"], kind=Kind.CONVERSION)
    FeedbackFactory(delivery=made["returned"], kind=Kind.RETURN)
    FeedbackFactory(
        delivery=made["refused"],
        kind=Kind.RETURN,
        outcome=Feedback.Outcome.FAILURE,
        outcome_reason="Return window has passed.",
    )
    # The same values on another buyer's delivery must never show.
    DeliveryEventFactory(reference="CRM-NONE")
    return made


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"feedback": "none"}, ["none", "old", "flow"]),
        ({"feedback": "converted"}, ["converted"]),
        ({"feedback": "returned"}, ["returned"]),
        ({"feedback": "refused"}, ["refused"]),
        ({"flow": "auto-insurance"}, ["flow"]),
        ({"q": "CRM-NONE"}, ["none"]),
        ({"q": "JANE.doe@example.com "}, ["flow"]),
        ({"q": "+1 512-789-1111"}, ["flow"]),
        ({"q": "nobody@example.com"}, []),
    ],
)
def test_filters_and_search(portal, assorted, params, expected):
    response = portal.get(LIST_URL, params)
    assert response.status_code == 200
    assert set(listed_event_ids(response)) == {assorted[k].event_id for k in expected}


def test_search_by_event_id(portal, assorted):
    event_id = assorted["returned"].event_id
    response = portal.get(LIST_URL, {"q": event_id.upper()})
    assert listed_event_ids(response) == [event_id]


def test_date_range_is_inclusive_of_both_days(portal, assorted):
    today = timezone.localdate()
    response = portal.get(
        LIST_URL,
        {
            "delivered_from": (today - timedelta(days=4)).isoformat(),
            "delivered_to": (today - timedelta(days=2)).isoformat(),
        },
    )
    got = set(listed_event_ids(response))
    assert got == {assorted[k].event_id for k in ("converted", "returned", "refused")}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("delivered_to", "9999-12-31"),
        ("delivered_from", "9999-12-31"),
        ("delivered_from", "0001-01-01"),
        ("delivered_to", "0001-01-01"),
    ],
)
def test_the_ends_of_the_calendar_are_dates_like_any_other(
    portal, assorted, name, value
):
    response = portal.get(LIST_URL, {name: value})

    assert response.status_code == 200
    everything = {d.event_id for d in assorted.values()}
    expected = (
        set()
        if (name, value)
        in {
            ("delivered_from", "9999-12-31"),
            ("delivered_to", "0001-01-01"),
        }
        else everything
    )
    assert set(listed_event_ids(response)) == expected


def test_an_invalid_date_is_named_not_ignored_silently(portal, assorted):
    response = portal.get(LIST_URL, {"delivered_from": "31/31/2026"})
    assert response.status_code == 200
    assert "Enter a valid date." in response.content.decode()


# The lead's page ------------------------------------------------------------------


def test_lead_page_shows_lead_delivery_and_feedback_history_with_notifications(
    portal, buyer, django_assert_max_num_queries
):
    source = SourceFactory(slug="bluesky", name="Bluesky Leads")
    made = DeliveryEventFactory(
        buyer=buyer,
        lead=LeadFactory(source=source, data={"first_name": "Jane", "state": "TX"}),
        reference="CRM-77",
    )
    feedback = FeedbackFactory(
        delivery=made, kind=Kind.RETURN, reason="Wrong number", note="Called twice"
    )
    Notification.objects.create(
        feedback=feedback,
        source=source,
        kind=Kind.RETURN,
        lead_delivered_at=feedback.delivery.delivered_at,
        status=Notification.Status.RETRYING,
        attempt_count=3,
        reason="HTTP 503 from https://bluesky.example/api?token=s3cret",
    )
    FeedbackFactory(
        delivery=made,
        kind=Kind.RETURN,
        outcome=Feedback.Outcome.FAILURE,
        outcome_reason="Lead already returned",
    )
    # One more than before corrections: the buyer's correction window.
    with django_assert_max_num_queries(13):
        response = portal.get(f"/portal/deliveries/{made.event_id}/")
    body = response.content.decode()
    assert response.status_code == 200
    for text in ("Jane", "TX", "CRM-77", made.event_id, "Bluesky Leads"):
        assert text in body
    assert "Wrong number" in body
    assert "Called twice" in body
    assert "Lead already returned" in body
    assert "Retrying" in body
    assert '<td data-label="Attempts" class="num">3</td>' in body
    assert "HTTP 503 from [URL]" in body
    assert "s3cret" not in body


def test_lead_page_offers_the_sources_allowed_return_reasons(portal, buyer):
    source = SourceFactory(return_reasons=["Wrong number", "Disconnected"])
    made = delivery(buyer, lead=LeadFactory(source=source))
    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()
    assert re.search(r'<select name="return-reason"[^>]*>', body)
    assert '<option value="Disconnected">' in body


def test_lead_page_suggests_the_buyers_usual_reasons_otherwise(portal, buyer):
    for reason in ("Duplicate", "Duplicate", "Bad phone"):
        FeedbackFactory(delivery=delivery(buyer), kind=Kind.RETURN, reason=reason)
    FeedbackFactory(kind=Kind.RETURN, reason="Someone else's reason")
    made = delivery(buyer)
    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()
    assert 'list="return-reasons"' in body
    suggestions = re.search(
        r'<datalist id="return-reasons">(.*?)</datalist>', body
    ).group(1)
    assert suggestions.index("Duplicate") < suggestions.index("Bad phone")
    assert "Someone else" not in suggestions


# Reporting feedback ---------------------------------------------------------------


def test_mark_converted_with_revenue_goes_through_feedback_receive(
    portal, buyer, buyer_user
):
    made = delivery(buyer)
    response = portal.post(
        f"/portal/deliveries/{made.event_id}/feedback/conversion/",
        {
            "conversion-kind": "conversion",
            "conversion-revenue": "1250.50",
            "conversion-note": "Signed",
        },
    )
    assert response.status_code == 302
    feedback = Feedback.objects.get(delivery=made)
    assert feedback.kind == Kind.CONVERSION
    assert feedback.revenue == Decimal("1250.50")
    assert feedback.note == "Signed"
    assert feedback.channel == Feedback.Channel.PORTAL
    assert feedback.submitted_by == buyer_user
    assert feedback.outcome == Feedback.Outcome.SUCCESS
    page = portal.get(response["Location"]).content.decode()
    assert "Conversion recorded." in page


def test_return_then_a_second_return_is_refused_inline_with_its_reason(portal, buyer):
    made = delivery(buyer)
    url = f"/portal/deliveries/{made.event_id}/feedback/return/"
    data = {"return-kind": "return", "return-reason": "Wrong number"}
    assert portal.post(url, data).status_code == 302

    response = portal.post(url, data, follow=True)
    body = response.content.decode()
    inline = re.search(r'id="report-return".*?</section>', body, re.S).group(0)
    assert "Refused: This lead was already returned." in inline
    # The lead's page no longer offers a return, and says when it was made.
    assert "This lead was returned on" in inline
    assert "<form" not in inline
    outcomes = sorted(Feedback.objects.filter(delivery=made).values_list("outcome"))
    assert outcomes == [("failure",), ("success",)]


def test_a_reason_outside_the_sources_list_is_refused(portal, buyer):
    source = SourceFactory(return_reasons=["Wrong number"])
    made = delivery(buyer, lead=LeadFactory(source=source))
    response = portal.post(
        f"/portal/deliveries/{made.event_id}/feedback/return/",
        {"return-kind": "return", "return-reason": "Made up"},
        follow=True,
    )
    body = response.content.decode()
    inline = re.search(r'id="report-return".*?</section>', body, re.S).group(0)
    assert "“Made up” is not a return reason" in inline
    assert "It accepts: Wrong number." in inline
    feedback = Feedback.objects.get(delivery=made)
    assert feedback.outcome == Feedback.Outcome.FAILURE  # kept, and reported on


def test_status_update_with_an_outcome_code(portal, buyer):
    made = delivery(buyer)
    response = portal.post(
        f"/portal/deliveries/{made.event_id}/feedback/status/",
        {"status-kind": "status", "status-outcome_code": "contacted"},
    )
    assert response.status_code == 302
    feedback = Feedback.objects.get(delivery=made)
    assert (feedback.kind, feedback.outcome_code.code) == ("status", "contacted")


def test_a_negative_revenue_is_a_form_error_and_stores_nothing(portal, buyer):
    made = delivery(buyer)
    response = portal.post(
        f"/portal/deliveries/{made.event_id}/feedback/conversion/",
        {"conversion-kind": "conversion", "conversion-revenue": "-5"},
    )
    assert response.status_code == 400
    assert "greater than or equal to 0" in response.content.decode()
    assert not Feedback.objects.exists()


def test_convert_a_selection_reports_each_delivery(portal, buyer, other_buyer):
    mine = [delivery(buyer) for _ in range(3)]
    returned_already = mine[2]
    FeedbackFactory(delivery=returned_already, kind=Kind.RETURN)
    theirs = delivery(other_buyer)
    response = portal.post(
        "/portal/deliveries/feedback/",
        {
            "event_ids": [d.event_id for d in mine] + [theirs.event_id],
            "kind": "conversion",
            "revenue": "99.00",
            "note": "Q4 batch",
        },
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<strong>3</strong> accepted, <strong>1</strong> refused" in body
    assert "No delivery of yours has this event id." in body
    assert (
        Feedback.objects.filter(
            delivery__in=mine, kind="conversion", revenue=Decimal("99.00")
        ).count()
        == 3
    )
    assert not Feedback.objects.filter(delivery=theirs).exists()


def test_return_a_selection_shows_refusals_inline(portal, buyer):
    fresh = delivery(buyer)
    stale = delivery(buyer, ago_days=400)
    response = portal.post(
        "/portal/deliveries/feedback/",
        {
            "event_ids": [fresh.event_id, stale.event_id],
            "kind": "return",
            "reason": "Duplicate",
        },
    )
    body = response.content.decode()
    assert "<strong>1</strong> accepted, <strong>1</strong> refused" in body
    assert "The return window of 90 days after delivery has passed." in body


def test_an_empty_selection_says_so(portal, buyer):
    response = portal.post(
        "/portal/deliveries/feedback/", {"kind": "conversion"}, follow=True
    )
    assert "Select at least one delivery." in response.content.decode()
    assert not Feedback.objects.exists()


# API keys ---------------------------------------------------------------------


def test_create_a_key_shows_it_once_and_it_works(portal, buyer, client):
    response = portal.post("/portal/keys/", {"name": "Salesforce"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    raw_key = re.search(r'value="(lb_[^"]+)"', response.content.decode()).group(1)
    api_key = ApiKey.objects.get(name="Salesforce")
    assert api_key.buyer == buyer
    assert api_key.scope == "buyer"

    listing = portal.get("/portal/keys/").content.decode()
    assert api_key.prefix in listing
    assert raw_key not in listing
    assert "Never" in listing

    api = client.get("/api/v1/feedback", HTTP_X_API_KEY=raw_key)
    assert api.status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    assert "Never" not in portal.get("/portal/keys/").content.decode()


def test_revoke_a_key(portal, buyer_key, client):
    api_key, raw_key = buyer_key
    response = portal.post(f"/portal/keys/{api_key.public_id}/revoke/", follow=True)
    assert "revoked" in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert client.get("/api/v1/feedback", HTTP_X_API_KEY=raw_key).status_code == 401


def test_a_key_needs_a_name(portal):
    response = portal.post("/portal/keys/", {"name": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_keys_page_lists_only_the_buyers_keys(portal, buyer_key, other_buyer_key):
    body = portal.get("/portal/keys/").content.decode()
    assert buyer_key[0].prefix in body
    assert other_buyer_key[0].prefix not in body


# Integration ------------------------------------------------------------------


def test_integration_page_has_the_buyers_urls_examples_and_fields(portal, buyer):
    made = delivery(buyer)
    body = portal.get("/portal/integration/").content.decode()
    assert "http://testserver/feedback?event_id=" in body
    assert "http://testserver/api/v1/feedback" in body
    assert made.event_id in body
    for example in (
        "curl -G",
        "-d type=conversion",
        "application/json",
        "application/xml",
        '{"items": [',
    ):
        assert example in body.replace("&quot;", '"').replace("&#x27;", "'")
    for field in (
        "event_id",
        "reference",
        "outcome_code",
        "revenue",
        "quality_score",
        "occurred_at",
        "custom",
        "note",
    ):
        assert f"<code>{field}</code>" in body
    assert "Or send outcome_code." in body  # the serializer's own help text
    assert "<code>contacted</code>" in body


def test_lead_page_queries_do_not_grow_with_its_history(portal, buyer):
    source = SourceFactory(slug="bluesky", name="Bluesky Leads")
    made = delivery(buyer, lead=LeadFactory(source=source))
    url = f"/portal/deliveries/{made.event_id}/"
    portal.get(url)  # the first request stores the current buyer in the session

    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert portal.get(url).status_code == 200
        return len(queries)

    FeedbackFactory(delivery=made, kind=Kind.STATUS)
    one = queries_for_page()
    for _ in range(10):
        feedback = FeedbackFactory(delivery=made, kind=Kind.STATUS, reason="Called")
        for status in (Notification.Status.SUCCEEDED, Notification.Status.DEAD):
            Notification.objects.create(
                feedback=feedback,
                source=source,
                kind=Kind.STATUS,
                lead_delivered_at=feedback.delivery.delivered_at,
                status=status,
            )
    assert queries_for_page() == one


def test_logging_out_of_the_admin_leads_back_to_the_admin(client, staff_user):
    client.force_login(staff_user)
    body = client.post("/admin/logout/").content.decode()
    assert "You are logged out" in body
    assert 'href="/admin/"' in body
