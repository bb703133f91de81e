"""The JSON feedback API: POST and GET /api/v1/feedback (DESIGN §4.2)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.models import BuyerPolicy, Feedback
from sources.models import FeedbackConfig, Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/feedback"


@pytest.fixture
def delivery(buyer):
    return DeliveryEventFactory(buyer=buyer)


def post(client, payload, **headers):
    return client.post(URL, payload, format="json", **headers)


def test_accepted_feedback_is_201_with_the_feedback(buyer_client, delivery):
    response = post(
        buyer_client,
        {
            "event_id": delivery.event_id,
            "type": "conversion",
            "revenue": "1250.00",
            "quality_score": 5,
            "custom": {"plan": "gold"},
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    feedback = Feedback.objects.get()
    assert body["feedback_id"] == str(feedback.public_id)
    assert body["event_id"] == delivery.event_id
    assert body["reference"] == delivery.reference
    assert body["type"] == "conversion"
    assert body["revenue"] == "1250.00"
    assert body["outcome"] == "success"
    assert body["lead"]["id"] == delivery.lead.public_id
    assert feedback.channel == Feedback.Channel.API


def test_by_reference_with_outcome_code(buyer_client, delivery):
    response = post(
        buyer_client, {"reference": delivery.reference, "outcome_code": "duplicate"}
    )

    assert response.status_code == 201
    assert response.json()["type"] == "return"
    assert response.json()["outcome_code"] == "duplicate"


def test_refused_is_422_problem_with_feedback_id(buyer_client, delivery):
    response = post(
        buyer_client, {"event_id": delivery.event_id, "type": "return", "revenue": "-5"}
    )

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["errors"] == [{"field": "revenue", "message": "Cannot be negative."}]
    assert body["outcome"] == "failure"
    stored = Feedback.objects.get(public_id=body["feedback_id"])
    assert stored.outcome == Feedback.Outcome.FAILURE


def test_duplicate_return_is_409(buyer_client, delivery):
    post(buyer_client, {"event_id": delivery.event_id, "type": "return"})

    response = post(buyer_client, {"event_id": delivery.event_id, "type": "return"})

    assert response.status_code == 409
    assert response.json()["detail"] == "This lead was already returned."


def test_forbidden_kind_is_409(buyer, buyer_client, delivery):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.STATUS, enabled=False)

    response = post(buyer_client, {"event_id": delivery.event_id, "type": "status"})

    assert response.status_code == 409
    assert (
        "Your account may not send this kind of feedback." in response.json()["detail"]
    )


def test_unknown_event_is_404_problem(buyer_client):
    response = post(buyer_client, {"event_id": "d" * 24, "type": "return"})

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "event_id"


def test_unknown_fields_are_refused_by_name(buyer_client, delivery):
    response = post(
        buyer_client,
        {"event_id": delivery.event_id, "type": "conversion", "revenu": "10"},
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "revenu", "message": "revenu is not a field Leadback knows."}
    ]
    assert Feedback.objects.count() == 0


def test_not_an_object_is_422(buyer_client):
    response = post(buyer_client, ["a", "b"])

    assert response.status_code == 422


def test_integration_key_cannot_post_feedback(integration_client, delivery):
    response = post(
        integration_client, {"event_id": delivery.event_id, "type": "return"}
    )

    assert response.status_code == 403


def test_items_one_bad_item_does_not_sink_the_others(buyer_client, buyer):
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(3)]
    items = [
        {"event_id": deliveries[0].event_id, "type": "conversion", "revenue": "10"},
        {"event_id": deliveries[1].event_id, "type": "return", "quality_score": 9},
        {"event_id": "e" * 24, "type": "return"},
        {"reference": deliveries[2].reference, "type": "status", "typo": 1},
        {"reference": deliveries[2].reference, "type": "status"},
    ]

    response = post(buyer_client, {"items": items})

    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == [201, 422, 404, 422, 201]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3, 4]
    assert body["results"][1]["errors"][0]["field"] == "items.1.quality_score"
    assert body["results"][3]["errors"][0]["field"] == "items.3.typo"
    assert body["results"][0]["feedback"]["revenue"] == "10.00"
    assert (body["accepted"], body["refused"]) == (2, 3)
    # accepted twice, refused quality score stored; 404 and unknown field not stored
    assert Feedback.objects.count() == 3


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"items": []}, "items"),
        ({"items": "x"}, "items"),
        ({"items": [{}], "extra": 1}, "items"),
    ],
)
def test_bad_items_envelope_is_422(buyer_client, payload, field):
    response = post(buyer_client, payload)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_more_than_1000_items_is_refused(buyer_client, delivery):
    items = [{"event_id": delivery.event_id, "type": "status"}] * 1001

    response = post(buyer_client, {"items": items})

    assert response.status_code == 422
    assert "1000" in response.json()["detail"]
    assert Feedback.objects.count() == 0


def test_list_is_scoped_filtered_and_paginated(
    buyer, other_buyer, buyer_client, delivery
):
    now = timezone.now()
    conversion = FeedbackFactory(delivery=delivery, kind=Kind.CONVERSION)
    refused = FeedbackFactory(
        delivery=delivery, kind=Kind.RETURN, outcome=Feedback.Outcome.FAILURE
    )
    old = FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer), received_at=now - timedelta(days=10)
    )
    FeedbackFactory(delivery=DeliveryEventFactory(buyer=other_buyer))

    def ids(query):
        response = buyer_client.get(URL, query)
        assert response.status_code == 200, response.content
        return {row["feedback_id"] for row in response.json()["results"]}

    assert ids({}) == {str(f.public_id) for f in (conversion, refused, old)}
    assert ids({"kind": "return"}) == {str(refused.public_id)}
    assert ids({"outcome": "success", "event_id": delivery.event_id}) == {
        str(conversion.public_id)
    }
    assert ids({"reference": old.delivery.reference}) == {str(old.public_id)}
    since = (now - timedelta(days=1)).isoformat()
    assert ids({"since": since}) == {str(conversion.public_id), str(refused.public_id)}
    assert ids({"until": since}) == {str(old.public_id)}

    first_page = buyer_client.get(URL, {"page_size": 2}).json()
    assert len(first_page["results"]) == 2
    second_page = buyer_client.get(first_page["next"]).json()
    assert len(second_page["results"]) == 1
    assert second_page["next"] is None


def test_list_rejects_bad_filter_values(buyer_client):
    response = buyer_client.get(URL, {"kind": "refund"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"


def test_detail_is_scoped(buyer, buyer_client, other_buyer_client, delivery):
    feedback = FeedbackFactory(delivery=delivery)

    own = buyer_client.get(f"{URL}/{feedback.public_id}")
    foreign = other_buyer_client.get(f"{URL}/{feedback.public_id}")
    unknown = other_buyer_client.get(f"{URL}/00000000-0000-4000-8000-000000000000")

    assert own.status_code == 200
    assert own.json()["feedback_id"] == str(feedback.public_id)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()


def test_integration_key_reads_all_feedback(integration_client, buyer, other_buyer):
    FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))
    FeedbackFactory(delivery=DeliveryEventFactory(buyer=other_buyer))

    response = integration_client.get(URL)

    assert len(response.json()["results"]) == 2


@pytest.mark.parametrize(
    "value",
    [
        "0374-08-03T00:47:44.546-08:14",
        "2093-02-23T20:56:18.90098-23:41",
        "0001-01-01T00:00:00+05:00",
    ],
)
def test_odd_offsets_in_filters_are_read_in_utc_or_refused(buyer_client, value):
    response = buyer_client.get(URL, {"since": value, "until": value})

    assert response.status_code in (200, 422), response.content


def test_odd_offsets_in_occurred_at_are_refused_or_stored_in_utc(
    buyer_client, delivery
):
    response = post(
        buyer_client,
        {
            "event_id": delivery.event_id,
            "type": "status",
            "occurred_at": "0001-01-01T00:00:00+05:00",
        },
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "occurred_at"


# Notifications in the output ----------------------------------------------------


def forwarded(feedback, *, status=Notification.Status.SUCCEEDED, **fields):
    """A notification of `feedback` under a new config of its source."""
    config = FeedbackConfig.objects.create(
        source=feedback.source,
        kind=feedback.kind,
        method="json",
        url=fields.pop("url", "https://returns.example/api"),
        auth_type="bearer",
        auth_secret=fields.pop("auth_secret", "tok-very-secret"),
    )
    return Notification.objects.create(
        feedback=feedback,
        config=config,
        source=feedback.source,
        kind=feedback.kind,
        lead_delivered_at=feedback.delivery.delivered_at,
        status=status,
        **fields,
    )


def test_detail_lists_where_the_feedback_was_forwarded(buyer_client, delivery):
    feedback = FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
    sent = forwarded(
        feedback, reason="Thanks", reference="S-1", attempt_count=1, finished_at=None
    )
    retrying = forwarded(
        feedback,
        status=Notification.Status.RETRYING,
        reason="HTTP 503 Service Unavailable",
        attempt_count=2,
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )

    response = buyer_client.get(f"{URL}/{feedback.public_id}")

    assert response.status_code == 200
    notifications = response.json()["notifications"]
    sent.refresh_from_db()
    assert notifications[0] == {
        "id": sent.public_id,
        "source": feedback.source.slug,
        "kind": "return",
        "status": "succeeded",
        "attempts": 1,
        "reason": "Thanks",
        "reference": "S-1",
        "next_attempt_at": None,
        "updated_at": sent.updated_at.isoformat().replace("+00:00", "Z"),
    }
    assert notifications[1]["id"] == retrying.public_id
    assert notifications[1]["status"] == "retrying"
    assert notifications[1]["attempts"] == 2
    assert notifications[1]["next_attempt_at"] is not None


def test_notifications_show_no_endpoint_or_secret(buyer_client, delivery):
    feedback = FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
    reasons = [
        "Could not connect to returns.partner.example in time.",
        "Refused by the SSRF guard: 10.1.2.3 is an internal address.",
        "Refused by the SSRF guard: fd00::1 is an internal address.",
        "Mapping 'token': https://returns.partner.example/api?key=k-123 is bad",
        "HTTP 401 Unauthorized: token tok-very-secret is not valid",
    ]
    for reason in reasons:
        forwarded(
            feedback,
            status=Notification.Status.RETRYING,
            url="https://returns.partner.example/api?key=k-123",
            reason=reason,
        )

    response = buyer_client.get(f"{URL}/{feedback.public_id}")

    body = response.content.decode()
    for leak in ("partner.example", "k-123", "tok-very-secret", "10.1.2.3", "fd00"):
        assert leak not in body
    assert [n["reason"] for n in response.json()["notifications"]] == [
        "Could not connect to the source in time.",
        "Refused by the SSRF guard: [address] is an internal address.",
        "Refused by the SSRF guard: [address] is an internal address.",
        "Mapping 'token': [redacted] is bad",
        "HTTP 401 Unauthorized: token [redacted] is not valid",
    ]


def test_list_includes_each_feedbacks_own_notifications_in_constant_queries(
    buyer, other_buyer, buyer_client, django_assert_max_num_queries
):
    def add(n):
        for _ in range(n):
            feedback = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))
            forwarded(feedback)
            forwarded(feedback, status=Notification.Status.DEAD)

    def get_list(expected_rows):
        with CaptureQueriesContext(connection) as queries:
            response = buyer_client.get(URL)
        assert response.status_code == 200
        assert len(response.json()["results"]) == expected_rows
        return response, len(queries)

    foreign = FeedbackFactory(delivery=DeliveryEventFactory(buyer=other_buyer))
    foreign_notification = forwarded(foreign)
    add(2)
    get_list(2)  # the key's first use writes last_used_at
    _, with_2 = get_list(2)
    add(18)

    with django_assert_max_num_queries(with_2):
        response, with_20 = get_list(20)

    assert with_20 == with_2
    body = response.json()
    for row in body["results"]:
        stored = Notification.objects.filter(feedback__public_id=row["feedback_id"])
        assert {n["id"] for n in row["notifications"]} == {n.public_id for n in stored}
        assert {n["status"] for n in row["notifications"]} == {"succeeded", "dead"}
    assert foreign_notification.public_id not in response.content.decode()


def test_other_buyers_cannot_read_notifications(
    buyer_client, other_buyer_client, delivery
):
    feedback = FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
    notification = forwarded(feedback)

    own = buyer_client.get(f"{URL}/{feedback.public_id}")
    foreign_detail = other_buyer_client.get(f"{URL}/{feedback.public_id}")
    foreign_list = other_buyer_client.get(URL)

    assert own.json()["notifications"][0]["id"] == notification.public_id
    assert foreign_detail.status_code == 404
    assert foreign_list.json()["results"] == []
    assert notification.public_id not in foreign_detail.content.decode()


def test_a_new_feedback_answers_with_its_pending_notifications(buyer_client, buyer):
    delivery = DeliveryEventFactory(buyer=buyer)
    config = FeedbackConfig.objects.create(
        source=delivery.source, kind="return", url="https://returns.example/api"
    )

    with CaptureQueriesContext(connection) as queries:
        single = post(buyer_client, {"event_id": delivery.event_id, "type": "return"})
    # Read now: the next request empties the connection's query log.
    statements = [q["sql"] for q in queries.captured_queries]
    items = post(
        buyer_client,
        {"items": [{"event_id": delivery.event_id, "type": "conversion"}]},
    )

    assert single.status_code == 201
    [notification] = single.json()["notifications"]
    stored = Notification.objects.get(config=config)
    assert notification["id"] == stored.public_id
    assert notification["status"] == "pending"
    assert notification["source"] == delivery.source.slug
    # The answer lists the rows the intake created, as a read would show them,
    # without reading them back.
    detail = buyer_client.get(f"/api/v1/feedback/{single.json()['feedback_id']}")
    assert detail.json()["notifications"] == [notification]
    assert any(
        sql.startswith('INSERT INTO "feedback_notification"') for sql in statements
    )
    assert not [
        sql
        for sql in statements
        if sql.startswith("SELECT") and 'FROM "feedback_notification"' in sql
    ]
    # No conversion config: the conversion was accepted and forwarded nowhere.
    assert items.json()["results"][0]["feedback"]["notifications"] == []


def test_batch_answers_are_what_the_serializer_gives(buyer):
    from django.db.models import prefetch_related_objects

    from feedback.api.serializers import FeedbackOutputSerializer, feedback_outputs
    from feedback.api.views import notifications_prefetch
    from tests.factories import LeadFactory, seeded_outcome_codes

    codes = seeded_outcome_codes()
    plain = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))
    full = FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer, reference="CRM-7"),
        kind=Kind.RETURN,
        outcome_code=codes["bad_info"],
        reason="Bad phone",
        revenue="12.50",
        quality_score=2,
        custom={"crm": {"stage": "lost", "tags": ["a", 1, None]}},
        note="Called twice",
        channel=Feedback.Channel.PORTAL,
        occurred_at=timezone.now() - timedelta(days=2, microseconds=7),
    )
    forwarded(full, reason="POST https://returns.example/api?t=1 answered 500")
    forwarded(full, status=Notification.Status.PENDING, next_attempt_at=timezone.now())
    refused = FeedbackFactory(
        delivery=DeliveryEventFactory(
            buyer=buyer, lead=LeadFactory(data={"first_name": "Ana", "email": ""})
        ),
        kind=Kind.STATUS,
        revenue=0,
        outcome=Feedback.Outcome.FAILURE,
        outcome_reason="reason: 'x' is not an accepted status reason.",
    )
    feedbacks = list(
        Feedback.objects.filter(pk__in=[plain.pk, full.pk, refused.pk])
        .select_related("delivery", "lead", "outcome_code")
        .order_by("pk")
    )
    prefetch_related_objects(feedbacks, notifications_prefetch())

    expected = FeedbackOutputSerializer(feedbacks, many=True).data
    answered = feedback_outputs(feedbacks)

    assert answered == expected
    assert [list(a) for a in answered] == [list(e) for e in expected]
    assert len(answered[1]["notifications"]) == 2


def test_a_database_outage_is_a_503_to_retry_not_a_server_error(
    buyer_client, delivery, monkeypatch
):
    from django.db import OperationalError

    def unavailable(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("feedback.api.views.feedback_receive", unavailable)

    response = buyer_client.post(
        "/api/v1/feedback",
        {"event_id": delivery.event_id, "type": "conversion"},
        format="json",
    )

    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    assert response.json()["detail"] == "The database is unavailable. Retry shortly."
