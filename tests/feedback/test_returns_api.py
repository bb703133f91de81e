"""Returns resolution over the API (DESIGN §10): decisions, disputes, the list
of returns and the credits, each scoped to the caller's key."""

import concurrent.futures
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import time_machine
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.models import BuyerPolicy
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.services import (
    dispute_deadline,
    return_decide,
    return_dispute,
)
from tests.factories import FeedbackFactory, UserFactory, return_requested

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def decide(client, feedback, payload, **headers):
    return client.post(
        f"/api/v1/returns/{feedback.public_id}/decision",
        payload,
        format="json",
        **headers,
    )


def dispute(client, feedback, payload, **headers):
    return client.post(
        f"/api/v1/returns/{feedback.public_id}/dispute",
        payload,
        format="json",
        **headers,
    )


def rejected(feedback, note="Lead reached on the second try"):
    return return_decide(feedback=feedback, decision="reject", note=note)


@pytest.fixture
def pending(buyer):
    return return_requested(buyer=buyer, price=Decimal("25.00"))


# Decisions ------------------------------------------------------------------


def test_approval_answers_the_return_with_its_credit(
    integration_client, integration_key, pending
):
    response = decide(
        integration_client,
        pending,
        {"decision": "approve", "reason": "Disconnected", "credit_amount": "12.50"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["feedback_id"] == str(pending.public_id)
    assert body["event_id"] == pending.delivery.event_id
    assert body["reference"] == pending.delivery.reference
    assert body["buyer"] == "acme-insurance"
    assert body["reason"] == "Wrong number"
    assert body["review_state"] == "approved"
    assert body["credit"] == "12.50"
    assert body["decision_reason"] == "Disconnected"
    assert body["decided_at"] is not None
    assert body["dispute_deadline"] is None
    assert body["lead"]["id"] == pending.lead.public_id
    assert [(s["from"], s["to"], s["actor"]) for s in body["history"]] == [
        (None, "pending", "buyer"),
        ("pending", "approved", "integration"),
    ]
    credit = Credit.objects.get()
    assert credit.amount == Decimal("12.50")
    assert credit.api_key_id == integration_key[0].pk


def test_approval_without_an_amount_credits_the_policy_share(
    buyer, integration_client, pending
):
    BuyerPolicy.objects.filter(buyer=buyer).update(credit_percent=50)

    response = decide(integration_client, pending, {"decision": "approve"})

    assert response.status_code == 200
    assert response.json()["credit"] == "12.50"
    assert response.json()["decision_reason"] == ""


def test_rejection_opens_the_dispute_window(buyer, integration_client, pending):
    BuyerPolicy.objects.filter(buyer=buyer).update(dispute_days=3)

    response = decide(
        integration_client, pending, {"decision": "reject", "reason": "Answered"}
    )

    assert response.status_code == 200
    body = response.json()
    step = ReturnTransition.objects.get(feedback=pending, to_state="rejected")
    assert body["review_state"] == "rejected"
    assert body["credit"] is None
    assert body["decision_reason"] == "Answered"
    deadline = step.created_at + timedelta(days=3)
    assert body["dispute_deadline"] == deadline.isoformat().replace("+00:00", "Z")
    pending.refresh_from_db()
    assert dispute_deadline(pending) == deadline  # the service's own reckoning
    assert Credit.objects.count() == 0


def test_the_final_decision_on_a_dispute_credits_it(
    buyer_client, integration_client, pending
):
    rejected(pending)
    dispute(buyer_client, pending, {"comment": "The number never worked"})

    response = decide(
        integration_client, pending, {"decision": "approve", "reason": "Fair"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["review_state"] == "approved"
    assert body["credit"] == "25.00"
    assert [s["to"] for s in body["history"]] == [
        "pending",
        "rejected",
        "disputed",
        "approved",
    ]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_deciding_a_decided_return_is_409_naming_its_state(
    integration_client, pending, decision
):
    decide(integration_client, pending, {"decision": "approve"})

    response = decide(integration_client, pending, {"decision": decision})

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["review_state"] == "approved"
    assert "approved" in body["detail"]
    assert Credit.objects.count() == 1


def test_deciding_a_rejected_return_is_409(integration_client, pending):
    rejected(pending)

    response = decide(integration_client, pending, {"decision": "approve"})

    assert response.status_code == 409
    assert response.json()["review_state"] == "rejected"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"decision": "approve", "credit_amount": "25.01"}, "credit_amount"),
        ({"decision": "approve", "credit_amount": "-1"}, "credit_amount"),
        ({"decision": "approve", "credit_amount": "12.345"}, "credit_amount"),
        ({"decision": "approve", "credit_amount": "twelve"}, "credit_amount"),
        ({"decision": "reject", "credit_amount": "5.00"}, "credit_amount"),
        ({"decision": "maybe"}, "decision"),
        ({"decision": ""}, "decision"),
        ({}, "decision"),
        ({"decision": "approve", "reason": "x" * 2001}, "reason"),
        ({"decision": "approve", "credit_ammount": "1.00"}, "credit_ammount"),
    ],
)
def test_bad_values_are_400_naming_the_field(
    integration_client, pending, payload, field
):
    response = decide(integration_client, pending, payload)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    pending.refresh_from_db()
    assert pending.review_state == "pending"
    assert Credit.objects.count() == 0


def test_a_body_that_is_not_an_object_is_400(integration_client, pending):
    response = decide(integration_client, pending, ["approve"])

    assert response.status_code == 400


def test_buyer_keys_may_not_decide(buyer_client, pending):
    response = decide(buyer_client, pending, {"decision": "approve"})

    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    pending.refresh_from_db()
    assert pending.review_state == "pending"


def test_unknown_returns_are_404(buyer, integration_client):
    conversion = FeedbackFactory(delivery__buyer=buyer)

    for feedback_id in (UNKNOWN, conversion.public_id):
        response = integration_client.post(
            f"/api/v1/returns/{feedback_id}/decision",
            {"decision": "approve"},
            format="json",
        )
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"


def test_keys_are_required(client, pending):
    response = client.post(
        f"/api/v1/returns/{pending.public_id}/decision",
        {"decision": "approve"},
        content_type="application/json",
    )

    assert response.status_code == 401


# Disputes -------------------------------------------------------------------


def test_buyer_disputes_a_rejection(buyer_client, buyer_key, pending):
    rejected(pending)

    response = dispute(buyer_client, pending, {"comment": "  The number is dead  "})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["review_state"] == "disputed"
    assert body["dispute_deadline"] is None
    assert body["decision_reason"] == "Lead reached on the second try"
    assert body["history"][-1]["from"] == "rejected"
    assert body["history"][-1]["to"] == "disputed"
    assert body["history"][-1]["actor"] == "buyer"
    assert body["history"][-1]["note"] == "The number is dead"
    step = ReturnTransition.objects.get(feedback=pending, to_state="disputed")
    assert step.api_key_id == buyer_key[0].pk


def test_disputing_a_pending_return_is_409(buyer_client, pending):
    response = dispute(buyer_client, pending, {"comment": "Please"})

    assert response.status_code == 409
    assert response.json()["review_state"] == "pending"


def test_a_rejection_is_disputed_once(buyer_client, pending):
    rejected(pending)
    dispute(buyer_client, pending, {"comment": "First"})
    return_decide(feedback=pending, decision="reject", note="Still answered")

    again = dispute(buyer_client, pending, {"comment": "Second"})
    listed = buyer_client.get("/api/v1/returns").json()["results"][0]

    assert again.status_code == 409
    assert again.json()["review_state"] == "rejected"
    assert "once" in again.json()["detail"]
    assert listed["dispute_deadline"] is None
    assert listed["decision_reason"] == "Still answered"


def test_disputing_a_disputed_return_is_409(buyer_client, pending):
    rejected(pending)
    dispute(buyer_client, pending, {"comment": "First"})

    response = dispute(buyer_client, pending, {"comment": "Again"})

    assert response.status_code == 409
    assert response.json()["review_state"] == "disputed"


def test_disputes_after_dispute_days_are_409(buyer, buyer_client, pending):
    BuyerPolicy.objects.filter(buyer=buyer).update(dispute_days=2)
    rejected(pending)

    with time_machine.travel(timezone.now() + timedelta(days=2, minutes=1)):
        response = dispute(buyer_client, pending, {"comment": "Late"})

    assert response.status_code == 409
    assert response.json()["review_state"] == "rejected"
    assert "2 days" in response.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "comment"),
        ({"comment": ""}, "comment"),
        ({"comment": "   "}, "comment"),
        ({"comment": None}, "comment"),
        ({"comment": "x" * 2001}, "comment"),
        ({"comment": "ok", "evidence": "photo.jpg"}, "evidence"),
    ],
)
def test_bad_comments_are_400(buyer_client, pending, payload, field):
    rejected(pending)

    response = dispute(buyer_client, pending, payload)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    pending.refresh_from_db()
    assert pending.review_state == "rejected"


def test_integration_keys_may_not_dispute(integration_client, pending):
    rejected(pending)

    response = dispute(integration_client, pending, {"comment": "No"})

    assert response.status_code == 403


# Scoping --------------------------------------------------------------------


def comparable(response):
    return response.status_code, response.json()


def test_another_buyers_return_looks_unknown(buyer_client, other_buyer_client, pending):
    rejected(pending)

    foreign = dispute(other_buyer_client, pending, {"comment": "Mine?"})
    unknown = other_buyer_client.post(
        f"/api/v1/returns/{UNKNOWN}/dispute", {"comment": "Mine?"}, format="json"
    )

    assert foreign.status_code == 404
    assert comparable(foreign) == comparable(unknown)
    pending.refresh_from_db()
    assert pending.review_state == "rejected"
    assert dispute(buyer_client, pending, {"comment": "Mine"}).status_code == 200


def test_lists_show_a_buyer_only_its_own(
    buyer, other_buyer, buyer_client, other_buyer_client, integration_client
):
    mine = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)
    theirs = return_requested(buyer=other_buyer, review=BuyerPolicy.Review.AUTO)

    def ids(client, url, **query):
        body = client.get(url, query).json()
        return {r["feedback_id"] for r in body["results"]}, body.get("total")

    assert ids(buyer_client, "/api/v1/returns") == ({str(mine.public_id)}, None)
    assert ids(other_buyer_client, "/api/v1/returns") == (
        {str(theirs.public_id)},
        None,
    )
    assert ids(integration_client, "/api/v1/returns")[0] == {
        str(mine.public_id),
        str(theirs.public_id),
    }
    assert ids(buyer_client, "/api/v1/credits") == ({str(mine.public_id)}, "25.00")
    assert ids(integration_client, "/api/v1/credits") == (
        {str(mine.public_id), str(theirs.public_id)},
        "50.00",
    )
    # Another buyer's slug lists nothing, exactly like a slug nobody has.
    for url in ("/api/v1/returns", "/api/v1/credits"):
        foreign = buyer_client.get(url, {"buyer": other_buyer.slug})
        unknown = buyer_client.get(url, {"buyer": "nobody-at-all"})
        assert foreign.status_code == 200
        assert foreign.json() == unknown.json()
        assert foreign.json()["results"] == []
    assert buyer_client.get("/api/v1/credits", {"buyer": other_buyer.slug}).json()[
        "total"
    ] == ("0.00")
    assert ids(integration_client, "/api/v1/returns", buyer=other_buyer.slug)[0] == {
        str(theirs.public_id)
    }
    assert ids(integration_client, "/api/v1/credits", buyer=buyer.slug) == (
        {str(mine.public_id)},
        "25.00",
    )


# Lists ----------------------------------------------------------------------


def test_returns_filter_by_state_and_day_received(buyer, integration_client):
    with time_machine.travel("2026-11-03 12:00:00+00:00", tick=False):
        early = return_requested(buyer=buyer)
    with time_machine.travel("2026-11-20 12:00:00+00:00", tick=False):
        late = return_requested(buyer=buyer)
    rejected(late)

    def listed(**query):
        response = integration_client.get("/api/v1/returns", query)
        assert response.status_code == 200, response.content
        return [r["feedback_id"] for r in response.json()["results"]]

    assert listed() == [str(late.public_id), str(early.public_id)]
    assert listed(review_state="pending") == [str(early.public_id)]
    assert listed(review_state="rejected") == [str(late.public_id)]
    assert listed(**{"from": "2026-11-04"}) == [str(late.public_id)]
    assert listed(to="2026-11-03") == [str(early.public_id)]
    assert listed(**{"from": "2026-11-03", "to": "2026-11-03"}) == [
        str(early.public_id)
    ]
    assert listed(**{"from": "2026-11-21"}) == []
    assert len(listed(**{"from": "0001-01-01", "to": "9999-12-31"})) == 2


def test_bad_filters_are_refused_by_name(integration_client):
    response = integration_client.get("/api/v1/returns", {"review_state": "lost"})
    dates = integration_client.get("/api/v1/credits", {"from": "yesterday"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "review_state"
    assert dates.status_code == 422
    assert dates.json()["errors"][0]["field"] == "from"


def test_returns_list_pages_like_the_feedback_list(buyer, buyer_client):
    for _ in range(3):
        return_requested(buyer=buyer)

    first = buyer_client.get("/api/v1/returns", {"page_size": 2}).json()
    second = buyer_client.get(first["next"]).json()

    assert len(first["results"]) == 2
    assert len(second["results"]) == 1
    assert second["next"] is None


def test_returns_list_reads_a_fixed_number_of_queries(
    buyer, buyer_client, integration_client
):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            response = buyer_client.get("/api/v1/returns")
        assert response.status_code == 200
        return len(captured), len(response.json()["results"])

    first = return_requested(buyer=buyer)
    rejected(first)
    buyer_client.get("/api/v1/returns")  # the key's first use is recorded once
    one = queries()
    for index in range(4):
        feedback = return_requested(buyer=buyer)
        if index % 2:
            decide(integration_client, feedback, {"decision": "approve"})
        else:
            rejected(feedback)
            return_dispute(feedback=feedback, comment="No")
    five = queries()

    assert one[1] == 1
    assert five[1] == 5
    assert five[0] == one[0]


def test_history_names_no_one_and_shows_the_evidence_name_only(
    buyer, buyer_client, pending
):
    reviewer = UserFactory(
        username="reviewer", email="reviewer@seller.example", is_staff=True
    )
    return_decide(feedback=pending, decision="reject", user=reviewer, note="No")
    return_dispute(feedback=pending, comment="See the photo")
    ReturnTransition.objects.filter(feedback=pending, to_state="disputed").update(
        evidence="2026/12/stored-name.jpg", evidence_name="call-log.jpg"
    )

    response = buyer_client.get("/api/v1/returns")

    history = response.json()["results"][0]["history"]
    assert [s["actor"] for s in history] == ["buyer", "staff", "system"]
    assert history[2]["evidence"] == "call-log.jpg"
    assert history[1]["evidence"] is None
    text = response.content.decode()
    assert "reviewer" not in text
    assert "stored-name" not in text
    assert set(history[0]) == {"from", "to", "actor", "note", "at", "evidence"}


# Credits --------------------------------------------------------------------


def test_credits_total_every_page(buyer, integration_client):
    for price in ("10.00", "20.50", "30.25"):
        return_requested(
            buyer=buyer, review=BuyerPolicy.Review.AUTO, price=Decimal(price)
        )

    first = integration_client.get("/api/v1/credits", {"page_size": 2}).json()

    assert first["total"] == "60.75"
    assert len(first["results"]) == 2
    assert first["next"]
    credit = first["results"][0]
    assert credit["amount"] == "30.25"
    assert credit["price"] == "30.25"
    assert credit["buyer"] == buyer.slug
    assert set(credit) == {
        "feedback_id",
        "event_id",
        "reference",
        "buyer",
        "source",
        "flow",
        "reason",
        "price",
        "amount",
        "created_at",
    }


def test_credits_filter_by_day_granted_and_leave_voided_ones_out(
    buyer, integration_client
):
    with time_machine.travel("2026-10-31 12:00:00+00:00", tick=False):
        october = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)
    with time_machine.travel("2026-11-01 12:00:00+00:00", tick=False):
        november = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)
        voided = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)
    Credit.objects.filter(feedback=voided).update(voided_at=timezone.now())

    def listed(**query):
        body = integration_client.get("/api/v1/credits", query).json()
        return [c["feedback_id"] for c in body["results"]], body["total"]

    assert listed() == (
        [str(november.public_id), str(october.public_id)],
        "50.00",
    )
    assert listed(**{"from": "2026-11-01", "to": "2026-11-30"}) == (
        [str(november.public_id)],
        "25.00",
    )
    assert listed(to="2026-10-31") == ([str(october.public_id)], "25.00")
    assert listed(**{"from": "2026-12-01"}) == ([], "0.00")


def test_a_decision_credits_once_and_lists(integration_client, pending):
    decide(integration_client, pending, {"decision": "approve", "credit_amount": "7"})

    body = integration_client.get("/api/v1/credits").json()

    assert body["total"] == "7.00"
    assert [c["amount"] for c in body["results"]] == ["7.00"]


# Idempotency ----------------------------------------------------------------


def test_a_decision_replays_byte_for_byte_and_credits_once(integration_client, pending):
    payload = {"decision": "approve", "credit_amount": "10.00"}

    first = decide(integration_client, pending, payload, HTTP_IDEMPOTENCY_KEY="d-1")
    second = decide(integration_client, pending, payload, HTTP_IDEMPOTENCY_KEY="d-1")

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first["Content-Type"] == second["Content-Type"]
    assert second["Idempotency-Replayed"] == "true"
    assert Credit.objects.count() == 1
    assert ReturnTransition.objects.filter(to_state="approved").count() == 1


def test_a_dispute_replays_byte_for_byte(buyer_client, pending):
    rejected(pending)

    first = dispute(buyer_client, pending, {"comment": "x"}, HTTP_IDEMPOTENCY_KEY="k")
    second = dispute(buyer_client, pending, {"comment": "x"}, HTTP_IDEMPOTENCY_KEY="k")

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second["Idempotency-Replayed"] == "true"
    assert ReturnTransition.objects.filter(to_state="disputed").count() == 1


def test_a_refused_decision_is_not_kept(buyer_client, integration_client, pending):
    rejected(pending)
    payload = {"decision": "approve"}

    refused = decide(integration_client, pending, payload, HTTP_IDEMPOTENCY_KEY="r")
    dispute(buyer_client, pending, {"comment": "Please look again"})
    retried = decide(integration_client, pending, payload, HTTP_IDEMPOTENCY_KEY="r")

    assert refused.status_code == 409
    assert retried.status_code == 200
    assert "Idempotency-Replayed" not in retried
    assert retried.json()["review_state"] == "approved"


def test_the_same_key_on_another_return_is_422(buyer, integration_client, pending):
    other = return_requested(buyer=buyer)
    payload = {"decision": "reject"}

    decide(integration_client, pending, payload, HTTP_IDEMPOTENCY_KEY="same")
    response = decide(integration_client, other, payload, HTTP_IDEMPOTENCY_KEY="same")

    assert response.status_code == 422
    other.refresh_from_db()
    assert other.review_state == "pending"


# Rate limits ----------------------------------------------------------------


def test_the_key_rate_limit_counts_returns_calls_too(
    settings, buyer_client, integration_client, pending
):
    settings.LEADBACK_API_RATE_KEY = (2, 60)
    rejected(pending)

    answers = [
        buyer_client.get("/api/v1/credits"),
        dispute(buyer_client, pending, {"comment": "Counted"}),
        buyer_client.get("/api/v1/returns"),
    ]
    decision = decide(integration_client, pending, {"decision": "approve"})

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2]["Content-Type"] == "application/problem+json"
    assert "Retry-After" in answers[2]
    assert decision.status_code == 200  # another key, counted apart


# Schema ---------------------------------------------------------------------


def test_the_schema_documents_the_operations(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)

    paths = schema["paths"]
    decision = paths["/api/v1/returns/{feedback_id}/decision"]["post"]
    dispute_op = paths["/api/v1/returns/{feedback_id}/dispute"]["post"]
    for operation in (decision, dispute_op):
        assert {"200", "400", "403", "404", "409"} <= set(operation["responses"])
    returns_params = {p["name"] for p in paths["/api/v1/returns"]["get"]["parameters"]}
    credits_params = {p["name"] for p in paths["/api/v1/credits"]["get"]["parameters"]}
    assert {"review_state", "from", "to", "buyer", "cursor"} <= returns_params
    assert {"from", "to", "buyer", "cursor"} <= credits_params
    page = schema["components"]["schemas"]["PaginatedCreditOutputList"]
    assert "total" in page["properties"]


def test_feedback_ids_that_are_not_uuids_are_404(integration_client):
    response = integration_client.post(
        "/api/v1/returns/not-a-uuid/decision", {"decision": "approve"}, format="json"
    )

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


# PostgreSQL -----------------------------------------------------------------


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_racing_decisions_decide_once(live_server, buyer, integration_key):
    pending = return_requested(buyer=buyer)
    url = f"{live_server.url}/api/v1/returns/{pending.public_id}/decision"

    def send(index):
        decision = "approve" if index % 2 else "reject"
        return requests.post(
            url,
            json={"decision": decision},
            headers={"X-API-Key": integration_key[1]},
            timeout=30,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send, range(10)))

    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    pending.refresh_from_db()
    decided = ReturnTransition.objects.filter(feedback=pending).exclude(from_state="")
    assert decided.count() == 1
    assert Credit.objects.filter(feedback=pending).count() == (
        1 if pending.review_state == "approved" else 0
    )
    refused = {a.json()["review_state"] for a in answers if a.status_code == 409}
    assert refused == {pending.review_state}
