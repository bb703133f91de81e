"""The portal as a buyer uses it: a lead's page that knows the lead's feedback,
the bulk bar, search by name, the list as CSV, the summary page and the
sources' return reasons on the integration page."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from feedback.models import Feedback
from feedback.portal.labels import field_label, lead_fields
from feedback.portal.summary import summary_for_buyer
from sources.models import Kind
from tests.factories import (
    DeliveryEventFactory,
    FeedbackFactory,
    FlowFactory,
    LeadFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db

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


def section(body: str, kind: str) -> str:
    found = re.search(rf'id="report-{kind}".*?</section>', body, re.S)
    assert found is not None
    return found.group(0)


def feedback_url(made, kind):
    return f"/portal/deliveries/{made.event_id}/feedback/{kind}/"


# A lead's page --------------------------------------------------------------------


def test_mark_converted_has_no_reason_box(portal, buyer):
    made = delivery(buyer)
    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()
    assert 'name="conversion-reason"' not in section(body, "conversion")
    assert 'name="conversion-revenue"' in section(body, "conversion")
    assert 'name="return-reason"' in section(body, "return")


def test_a_source_that_lists_conversion_reasons_still_gets_one(portal, buyer):
    source = SourceFactory(conversion_reasons=["Sold", "Quoted"])
    made = delivery(buyer, lead=LeadFactory(source=source), source=source)
    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()
    assert re.search(r'<select name="conversion-reason"', section(body, "conversion"))


def test_a_returned_lead_no_longer_offers_a_return(portal, buyer):
    made = delivery(buyer)
    FeedbackFactory(delivery=made, kind=Kind.RETURN, reason="Bad phone")

    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()

    returned = section(body, "return")
    assert "This lead was returned on" in returned
    assert "Bad phone" in returned
    assert "<form" not in returned
    assert "<form" in section(body, "conversion")


def test_a_rejected_return_offers_a_return_again(portal, buyer):
    made = delivery(buyer)
    FeedbackFactory(
        delivery=made,
        kind=Kind.RETURN,
        review_state=Feedback.ReviewState.REJECTED,
    )
    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()
    assert "<form" in section(body, "return")


def test_a_return_after_a_conversion_asks_first_and_says_what_it_does(portal, buyer):
    made = delivery(buyer)
    FeedbackFactory(delivery=made, kind=Kind.CONVERSION, revenue=Decimal("900.00"))
    data = {"return-kind": "return", "return-reason": "Bad phone", "return-note": "x"}

    response = portal.post(feedback_url(made, "return"), data)

    assert response.status_code == 409
    asking = section(response.content.decode(), "return")
    assert "This lead was reported converted on" in asking
    assert "count the lead as both converted and returned" in asking
    assert 'name="return-confirmed" value="True"' in asking
    assert 'value="Bad phone"' in asking  # the buyer's values are kept
    assert "Return it anyway" in asking
    assert Feedback.objects.filter(kind=Kind.RETURN).count() == 0

    confirmed = portal.post(
        feedback_url(made, "return"), {**data, "return-confirmed": "True"}
    )

    assert confirmed.status_code == 302
    stored = Feedback.objects.get(kind=Kind.RETURN)
    assert (stored.reason, stored.outcome) == ("Bad phone", "success")


def test_a_second_conversion_asks_first(portal, buyer):
    made = delivery(buyer)
    FeedbackFactory(delivery=made, kind=Kind.CONVERSION, revenue=Decimal("900.00"))
    data = {"conversion-kind": "conversion", "conversion-revenue": "100"}

    response = portal.post(feedback_url(made, "conversion"), data)

    assert response.status_code == 409
    asking = section(response.content.decode(), "conversion")
    assert "already reported converted on" in asking
    assert "with revenue 900.00" in asking
    assert "will show 2 conversions for this lead" in asking
    assert "Record another conversion" in asking
    assert Feedback.objects.filter(kind=Kind.CONVERSION).count() == 1

    portal.post(feedback_url(made, "conversion"), {**data, "conversion-confirmed": "1"})
    assert Feedback.objects.filter(kind=Kind.CONVERSION).count() == 2


def test_a_first_conversion_and_a_status_update_ask_nothing(portal, buyer):
    made = delivery(buyer)
    first = portal.post(
        feedback_url(made, "conversion"), {"conversion-kind": "conversion"}
    )
    status = portal.post(
        feedback_url(made, "status"),
        {"status-kind": "status", "status-outcome_code": "contacted"},
    )
    assert (first.status_code, status.status_code) == (302, 302)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("first_name", "First name"),
        ("phone_1", "Phone"),
        ("postal_code", "ZIP code"),
        ("loan_amount", "Loan amount"),
        ("x", "X"),
    ],
)
def test_lead_fields_have_human_labels(name, label):
    assert field_label(name) == label


def test_lead_fields_read_in_a_persons_order():
    data = {"zzz": 1, "state": "TX", "email": "a@b.example", "first_name": "Ann"}
    assert [label for label, _ in lead_fields(data)] == [
        "First name",
        "Email",
        "State",
        "Zzz",
    ]


def test_the_lead_page_shows_the_labels(portal, buyer):
    made = delivery(buyer)
    body = portal.get(f"/portal/deliveries/{made.event_id}/").content.decode()
    assert "<dt>Phone</dt>" in body
    assert "<dt>phone_1</dt>" not in body


# The bulk bar ---------------------------------------------------------------------


def test_no_bulk_action_is_chosen_for_the_buyer(portal, buyer):
    made = delivery(buyer)
    body = portal.get(LIST_URL).content.decode()
    radios = re.findall(r'<input type="radio" name="kind"[^>]*>', body)
    assert len(radios) == 3
    assert not [r for r in radios if "checked" in r]

    response = portal.post(
        "/portal/deliveries/feedback/", {"event_ids": [made.event_id]}, follow=True
    )
    assert "Choose what to mark the selected deliveries as." in (
        response.content.decode()
    )
    assert not Feedback.objects.exists()


def test_bulk_reasons_are_grouped_by_source(portal, buyer):
    bluesky = SourceFactory(name="Bluesky Leads", return_reasons=["Duplicate", "Fraud"])
    northwind = SourceFactory(name="Northwind Media", return_reasons=["Bad phone"])
    anyone = SourceFactory(name="Harbor Digital")
    for source in (bluesky, northwind, anyone):
        delivery(buyer, lead=LeadFactory(source=source), source=source)
    FeedbackFactory(
        delivery=delivery(buyer, source=anyone), kind=Kind.RETURN, reason="Too old"
    )

    body = portal.get(LIST_URL).content.decode()

    select = re.search(r'<select name="reason".*?</select>', body, re.S).group(0)
    groups = re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', select, re.S)
    assert [
        (label, re.findall(r'value="([^"]+)"', opts)) for label, opts in groups
    ] == [
        ("Accepted by Bluesky Leads", ["Duplicate", "Fraud"]),
        ("Accepted by Northwind Media", ["Bad phone"]),
        ("Your usual reasons (other sources)", ["Too old"]),
    ]
    assert 'name="other_reason"' in body


def test_a_page_of_one_source_has_one_group(portal, buyer):
    source = SourceFactory(return_reasons=["Duplicate"])
    delivery(buyer, lead=LeadFactory(source=source), source=source)
    body = portal.get(LIST_URL).content.decode()
    assert re.findall(r'<optgroup label="([^"]+)"', body) == [
        "Accepted by all of these leads&#x27; source"
    ]


def test_without_lists_the_reason_is_typed_with_suggestions(portal, buyer):
    delivery(buyer)
    body = portal.get(LIST_URL).content.decode()
    assert '<input type="text" name="reason"' in body
    assert 'list="bulk-reasons"' in body
    assert "<optgroup" not in body


def test_a_typed_reason_wins_over_the_picked_one(portal, buyer):
    made = delivery(buyer)
    portal.post(
        "/portal/deliveries/feedback/",
        {
            "event_ids": [made.event_id],
            "kind": "return",
            "reason": "Duplicate",
            "other_reason": "Called twice",
        },
    )
    assert Feedback.objects.get().reason == "Called twice"


# Search and CSV -------------------------------------------------------------------


def test_search_finds_a_lead_by_name_in_any_case(portal, buyer, other_buyer):
    jane = delivery(
        buyer,
        lead=LeadFactory(data={"first_name": "Jane", "last_name": "Doe-Smith"}),
    )
    delivery(buyer, lead=LeadFactory(data={"first_name": "John", "last_name": "Roe"}))
    theirs = delivery(
        other_buyer,
        lead=LeadFactory(data={"first_name": "Jane", "last_name": "Doe-Smith"}),
    )

    def found(query):
        body = portal.get(LIST_URL, {"q": query}).content.decode()
        return re.findall(r'name="event_ids" value="([0-9a-f]{24})"', body)

    assert found("doe-smith") == [jane.event_id]
    assert found("JANE DOE-SMITH") == [jane.event_id]
    assert found("Jane Roe") == []
    assert theirs.event_id not in found("Doe-Smith")


def test_the_list_downloads_as_csv_with_its_filters(portal, buyer, other_buyer):
    flow = FlowFactory(name="Auto")
    kept = delivery(
        buyer,
        flow=flow,
        price=Decimal("12.50"),
        lead=LeadFactory(data={"first_name": "=HYPERLINK(1)", "last_name": "Doe"}),
    )
    FeedbackFactory(delivery=kept, kind=Kind.CONVERSION)
    delivery(buyer)  # another flow
    delivery(other_buyer, flow=flow)

    response = portal.get("/portal/deliveries.csv", {"flow": flow.slug})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment;" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["delivered_at", "event_id", "reference", "lead_id"]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["event_id"] == kept.event_id
    assert row["name"] == "'=HYPERLINK(1) Doe"  # formula-safe
    assert (row["flow"], row["price"], row["feedback"]) == (
        "Auto",
        "12.50",
        "converted",
    )


def test_a_csv_with_a_bad_filter_says_which(portal, buyer):
    response = portal.get("/portal/deliveries.csv", {"delivered_from": "yesterday"})
    assert response.status_code == 400
    assert "delivered_from" in response.content.decode()


def test_the_list_links_its_filters_to_the_csv(portal, buyer):
    delivery(buyer)
    body = portal.get(LIST_URL, {"feedback": "none"}).content.decode()
    assert 'href="/portal/deliveries.csv?feedback=none"' in body


# Summary --------------------------------------------------------------------------


def test_the_summary_counts_by_month_and_flow(buyer, other_buyer):
    today = timezone.localdate()
    auto, home = FlowFactory(name="Auto"), FlowFactory(name="Home")
    now = delivery(buyer, flow=auto)
    FeedbackFactory(delivery=now, kind=Kind.CONVERSION)
    FeedbackFactory(delivery=now, kind=Kind.CONVERSION)  # one lead, counted once
    back = delivery(buyer, flow=home)
    FeedbackFactory(delivery=back, kind=Kind.RETURN)
    refused = delivery(buyer, flow=home)
    FeedbackFactory(
        delivery=refused, kind=Kind.RETURN, outcome=Feedback.Outcome.FAILURE
    )
    delivery(buyer, flow=auto, ago_days=400)  # before the window
    delivery(other_buyer, flow=auto)

    months, flows, total = summary_for_buyer(buyer=buyer, today=today)

    assert len(months) == 12
    assert months[-1].label == today.strftime("%B %Y")
    this = months[-1]
    assert (this.delivered, this.conversions, this.returns) == (3, 1, 1)
    assert (this.conversion_rate, this.return_rate) == (
        Decimal("33.3"),
        Decimal("33.3"),
    )
    assert [(m.delivered, m.conversion_rate) for m in months[:-1]] == [(0, None)] * 11
    assert [(f.label, f.delivered, f.conversions, f.returns) for f in flows] == [
        ("Home", 2, 0, 1),
        ("Auto", 1, 1, 0),
    ]
    assert (total.delivered, total.conversions, total.returns) == (3, 1, 1)


def test_the_summary_page(portal, buyer):
    FeedbackFactory(delivery=delivery(buyer), kind=Kind.CONVERSION)
    body = portal.get("/portal/summary/").content.decode()
    assert "Your summary" in body
    assert 'aria-current="page">Summary' in body
    assert "100.0 %" in body


# Integration ----------------------------------------------------------------------


def test_the_integration_page_lists_each_sources_return_reasons(portal, buyer):
    listed = SourceFactory(name="Bluesky Leads", return_reasons=["Duplicate", "Fraud"])
    anyone = SourceFactory(name="Open Source Leads")
    none = SourceFactory(name="Harbor Digital", accepts_return=False)
    SourceFactory(name="Not mine", return_reasons=["Secret"])
    for source in (listed, anyone, none):
        delivery(buyer, source=source)

    body = portal.get("/portal/integration/").content.decode()

    reasons = re.search(r'id="return-reasons".*?</section>', body, re.S).group(0)
    assert "<dt>Bluesky Leads</dt>\n      <dd>Duplicate, Fraud</dd>" in reasons
    assert "<dt>Open Source Leads</dt>\n      <dd>Any reason.</dd>" in reasons
    assert "Does not accept returns." in reasons
    assert "Not mine" not in reasons
    assert "Wrong number" not in body  # the examples use reasons sources accept
