"""The LeadConduit-compatible feedback URL (DESIGN §4.1)."""

import base64
import json

import pytest
from lxml import etree

from feedback.models import BuyerPolicy, Feedback
from sources.models import Kind
from tests.factories import DeliveryEventFactory, LeadFactory, SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery(buyer):
    lead = LeadFactory(
        data={
            "first_name": "Mel",
            "last_name": "Gibson",
            "email": "mel@example.com",
            "phone_1": "5127891111",
            "state": "TX",
        }
    )
    return DeliveryEventFactory(buyer=buyer, lead=lead)


@pytest.fixture
def auth(buyer_key):
    return {"HTTP_X_API_KEY": buyer_key[1]}


def url(delivery, **params):
    query = "&".join(
        f"{k}={v}" for k, v in {"event_id": delivery.event_id, **params}.items()
    )
    return f"/feedback?{query}"


def test_form_post_return_is_accepted_like_leadconduit(client, delivery, auth):
    response = client.post(
        url(delivery),
        data="type=return&reason=Wrong+number",
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert response.status_code == 201, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    feedback = Feedback.objects.get()
    assert body == {
        "outcome": "success",
        "review_state": "approved",
        "reason": None,
        "lead": {
            "id": delivery.lead.public_id,
            "first_name": "Mel",
            "last_name": "Gibson",
            "email": "mel@example.com",
            "phone_1": "5127891111",
        },
        "feedback_id": str(feedback.public_id),
    }
    assert feedback.kind == Kind.RETURN
    assert feedback.reason == "Wrong number"
    assert feedback.channel == Feedback.Channel.LC_COMPAT
    assert feedback.delivery == delivery


def test_json_body(client, delivery, auth):
    response = client.post(
        url(delivery),
        data=json.dumps({"type": "conversion", "revenue": "1250.00"}),
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 201
    assert Feedback.objects.get().revenue == 1250


@pytest.mark.parametrize("content_type", ["text/xml", "application/xml"])
def test_xml_body_root_element_dropped(client, delivery, auth, content_type):
    body = (
        b'<?xml version="1.0" encoding="utf-8" ?>'
        b"<feedback><type>return</type><reason>Wrong number</reason></feedback>"
    )

    response = client.post(url(delivery), data=body, content_type=content_type, **auth)

    assert response.status_code == 201, response.content
    feedback = Feedback.objects.get()
    assert (feedback.kind, feedback.reason) == ("return", "Wrong number")


def test_get_with_query_variables(client, delivery, auth):
    response = client.get(url(delivery, type="conversion", reason="Sold"), **auth)

    assert response.status_code == 201
    assert Feedback.objects.get().reason == "Sold"


def test_query_variables_win_over_body(client, delivery, auth):
    response = client.post(
        url(delivery, reason="From+query"),
        data=json.dumps({"type": "conversion", "reason": "From body"}),
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 201
    assert Feedback.objects.get().reason == "From query"


def test_dotted_keys_nest(client, delivery, auth):
    response = client.post(
        url(delivery),
        data="type=conversion&custom.plan=gold&custom.term=12",
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert response.status_code == 201
    assert Feedback.objects.get().custom == {"plan": "gold", "term": "12"}


def test_variables_that_are_not_feedback_fields_are_kept_in_custom(
    client, delivery, auth
):
    response = client.post(
        url(delivery, campaign="spring"),
        data="type=conversion&crm_id=77&lead.email=mel%40example.com",
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert response.status_code == 201, response.content
    assert Feedback.objects.get().custom == {
        "campaign": "spring",
        "crm_id": "77",
        "lead": {"email": "mel@example.com"},
    }


def test_an_explicit_custom_wins_over_other_variables(client, delivery, auth):
    response = client.post(
        url(delivery),
        data=json.dumps(
            {
                "type": "conversion",
                "plan": "silver",
                "term": "12",
                "custom": {"plan": "gold"},
            }
        ),
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 201, response.content
    assert Feedback.objects.get().custom == {"plan": "gold", "term": "12"}


def test_kept_variables_count_toward_customs_limit(client, delivery, auth):
    response = client.post(
        url(delivery),
        data="type=conversion&notes=" + "x" * 5000,
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["outcome"] == "failure"
    assert body["reason"].startswith("custom must be at most 4096 bytes as JSON, not ")
    assert Feedback.objects.get().custom == {}


def test_a_key_or_the_format_switch_is_not_kept(client, delivery, auth, buyer_key):
    response = client.get(
        url(delivery, type="conversion", api_key=buyer_key[1], format="json"), **auth
    )

    assert response.status_code == 201
    assert Feedback.objects.get().custom == {}


@pytest.mark.parametrize("accept", ["text/xml", "application/xml"])
def test_xml_reply_has_result_root(client, delivery, auth, accept):
    response = client.get(url(delivery, type="conversion"), HTTP_ACCEPT=accept, **auth)

    assert response.status_code == 201
    assert response["Content-Type"].startswith(accept)
    root = etree.fromstring(response.content)
    assert root.tag == "result"
    assert root.findtext("outcome") == "success"
    assert root.findtext("lead/id") == delivery.lead.public_id
    assert root.find("reason") is not None


@pytest.mark.parametrize("accept", ["*/*", "application/json", None])
def test_json_is_the_default_reply(client, delivery, auth, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = client.get(url(delivery, type="conversion"), **headers, **auth)

    assert response["Content-Type"].startswith("application/json")
    assert response.json()["outcome"] == "success"


def test_unacceptable_accept_is_406(client, delivery, auth):
    response = client.get(
        url(delivery, type="conversion"), HTTP_ACCEPT="image/png", **auth
    )

    assert response.status_code == 406
    assert Feedback.objects.count() == 0


def test_body_without_content_type_is_415(client, delivery, auth):
    response = client.generic(
        "POST", url(delivery), data=b"type=return", content_type="", **auth
    )

    assert response.status_code == 415
    assert response.json()["outcome"] == "error"
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b'{"type": ', "JSON parse error"),
        ("text/xml", b"<feedback><type>return</feedback>", "XML parse error"),
    ],
)
def test_unparseable_body_is_400_with_parser_message(
    client, delivery, auth, content_type, body, message
):
    response = client.post(url(delivery), data=body, content_type=content_type, **auth)

    assert response.status_code == 400
    assert message in response.json()["reason"]


def test_xml_entities_are_refused_without_expansion(client, delivery, auth):
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<feedback><type>return</type><reason>&lol2;</reason></feedback>"
    )

    response = client.post(url(delivery), data=bomb, content_type="text/xml", **auth)

    assert response.status_code == 400
    assert "DOCTYPE" in response.json()["reason"]


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_other_methods_are_405_with_allow(client, delivery, auth, method):
    response = getattr(client, method)(url(delivery), **auth)

    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"


def test_refused_feedback_is_201_failure_and_recorded(client, delivery, auth):
    delivery.source.return_reasons = ["Wrong number", "Disconnected"]
    delivery.source.save()

    response = client.get(url(delivery, type="return", reason="Changed+mind"), **auth)

    assert response.status_code == 201
    body = response.json()
    assert body["outcome"] == "failure"
    assert "“Changed mind” is not a return reason" in body["reason"]
    # Like an accepted one, the refused feedback is stored and named.
    stored = Feedback.objects.get(delivery=delivery)
    assert body["feedback_id"] == str(stored.public_id)
    assert body["lead"]["id"] == delivery.lead.public_id
    feedback = Feedback.objects.get()
    assert feedback.outcome == Feedback.Outcome.FAILURE
    assert feedback.outcome_reason == body["reason"]


def test_forbidden_kind_is_409(client, delivery, auth, buyer):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.RETURN, enabled=False)

    response = client.get(url(delivery, type="return"), **auth)

    assert response.status_code == 409
    assert (
        response.json()["reason"] == "Your account may not send this kind of feedback."
    )


def test_unknown_event_is_404_and_not_recorded(client, auth):
    response = client.get("/feedback?event_id=" + "a" * 24 + "&type=return", **auth)

    assert response.status_code == 404
    assert response.json()["outcome"] == "error"
    assert Feedback.objects.count() == 0


def test_missing_type_is_an_error_not_recorded(client, delivery, auth):
    response = client.get(url(delivery), **auth)

    assert response.status_code == 422
    assert response.json() == {
        "outcome": "error",
        "reason": "Send a type or an outcome_code.",
    }
    assert Feedback.objects.count() == 0


def test_without_credentials_is_401(client, delivery):
    response = client.get(url(delivery, type="return"))

    assert response.status_code == 401
    assert Feedback.objects.count() == 0


def test_basic_auth_with_key_as_password_like_leadconduit(client, delivery, buyer_key):
    token = base64.b64encode(f"API:{buyer_key[1]}".encode()).decode()

    response = client.get(
        url(delivery, type="conversion"), HTTP_AUTHORIZATION=f"Basic {token}"
    )

    assert response.status_code == 201


def test_key_in_query_string_is_ignored(client, delivery, buyer_key):
    response = client.get(url(delivery, type="conversion", api_key=buyer_key[1]))

    assert response.status_code == 401


def test_integration_key_cannot_send_feedback(client, delivery, integration_key):
    response = client.get(
        url(delivery, type="conversion"), HTTP_X_API_KEY=integration_key[1]
    )

    assert response.status_code == 403
    assert Feedback.objects.count() == 0


def test_other_buyers_event_answers_like_an_unknown_one(
    client, other_buyer, other_buyer_key
):
    foreign = DeliveryEventFactory(buyer=other_buyer)
    stranger = {"HTTP_X_API_KEY": other_buyer_key[1]}
    delivery = DeliveryEventFactory(source=SourceFactory())

    foreign_response = client.get(url(delivery, type="return"), **stranger)
    unknown_response = client.get(
        "/feedback?event_id=" + "b" * 24 + "&type=return", **stranger
    )

    assert foreign.buyer == other_buyer
    assert foreign_response.status_code == unknown_response.status_code == 404
    assert foreign_response.json() == unknown_response.json()
