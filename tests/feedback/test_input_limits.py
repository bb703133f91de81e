"""Input the database cannot store, nesting past the limit, oversized bodies and
doubtful values: each refused (or read) on purpose, as README "Input limits" says."""

import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from feedback.api.errors import InputRefused
from feedback.api.negotiation import json_too_deep, nest_dotted
from feedback.api.serializers import EventInputSerializer
from feedback.imports.csvfile import decode
from feedback.imports.models import FeedbackImport
from feedback.imports.services import feedback_import_upload
from feedback.models import DeliveryEvent, Feedback, Lead
from feedback.safetext import MAX_DEPTH
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db

FEEDBACK = "/api/v1/feedback"
EVENTS = "/api/v1/events"
IMPORTS = "/api/v1/feedback/imports"
PROBLEM = "application/problem+json"


@pytest.fixture
def delivery(buyer):
    return DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=1)
    )


@pytest.fixture
def auth(buyer_key):
    return {"HTTP_X_API_KEY": buyer_key[1]}


def post_json(client, url, body, **extra):
    """Post `body` as it is written (a str keeps escapes like \\ud800 intact)."""
    data = body if isinstance(body, str) else json.dumps(body)
    return client.generic(
        "POST", url, data.encode(), content_type="application/json", **extra
    )


def nested(levels, leaf=1):
    """An object `levels` deep: nested(2) == {"a": {"a": 1}}."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def assert_problem(response, status, field, message):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert {"field": field, "message": message} in body["errors"]
    return body


def nothing_written():
    return (
        Feedback.objects.count(),
        DeliveryEvent.objects.count(),
        Lead.objects.count(),
        FeedbackImport.objects.count(),
    )


# Reading JSON depth and dotted names -------------------------------------------


def test_json_depth_is_read_without_parsing():
    assert json_too_deep(json.dumps(nested(MAX_DEPTH))) is None
    # Brackets inside strings do not count.
    assert json_too_deep(json.dumps({"s": "[[[[" * 100, "t": '\\"{{{'})) is None
    assert json_too_deep("[" * 100_000) == ".".join(["0"] * MAX_DEPTH)
    deep = json.dumps({"items": [{"custom": nested(MAX_DEPTH)}]})
    assert json_too_deep(deep) == "items.0.custom." + ".".join(["a"] * 29)


def test_dotted_names_count_their_parts_as_levels():
    assert nest_dotted({".".join(["a"] * MAX_DEPTH): 1})
    with pytest.raises(InputRefused) as refused:
        nest_dotted({".".join(["a"] * (MAX_DEPTH + 1)): 1})
    assert refused.value.status_code == 400
    # A dotted name inside an object counts from where it sits.
    with pytest.raises(InputRefused):
        nest_dotted({"custom": {".".join(["a"] * MAX_DEPTH): 1}})


# NUL and lone surrogates ------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"note": "Call\x00back"}, "note"),
        ({"reason": "\x00"}, "reason"),
        ({"custom": {"plan": "gold\x00"}}, "custom.plan"),
        ({"custom": {"pl\x00an": "gold"}}, "custom.pl\\u0000an"),
        ({"custom": {"tags": ["a", "\x00"]}}, "custom.tags.1"),
    ],
)
def test_nul_anywhere_in_feedback_is_422_naming_the_field(
    buyer_client, delivery, fields, field
):
    body = {"event_id": delivery.event_id, "type": "conversion", **fields}

    response = post_json(buyer_client, FEEDBACK, body)

    message = "must not contain NUL characters"
    if "\\u" in field:  # the NUL is in a name, shown escaped
        message = f"the name {message}"
    assert_problem(response, 422, field, message)
    assert Feedback.objects.count() == 0


def test_nul_in_a_reference_never_reaches_the_lookup(buyer_client, delivery):
    response = post_json(
        buyer_client, FEEDBACK, {"reference": "CRM\x00", "type": "conversion"}
    )

    assert_problem(response, 422, "reference", "must not contain NUL characters")


def test_a_lone_surrogate_is_422_not_valid_unicode(buyer_client, delivery):
    body = (
        f'{{"event_id": "{delivery.event_id}", "type": "conversion", '
        '"note": "broken \\ud800 pair"}'
    )

    response = post_json(buyer_client, FEEDBACK, body)

    assert_problem(
        response, 422, "note", "is not valid Unicode (it contains a lone surrogate)"
    )
    assert Feedback.objects.count() == 0


def test_one_bad_item_refuses_the_batch_before_anything_is_written(
    buyer_client, delivery
):
    good = {"event_id": delivery.event_id, "type": "conversion"}
    bad = {**good, "custom": {"k": "\x00"}}

    response = post_json(buyer_client, FEEDBACK, {"items": [good, bad]})

    assert_problem(response, 422, "items.1.custom.k", "must not contain NUL characters")
    assert Feedback.objects.count() == 0


def test_an_unknown_field_named_with_nul_is_refused_not_echoed(buyer_client, delivery):
    body = {"event_id": delivery.event_id, "type": "conversion", "x\x00": 1}

    response = post_json(
        buyer_client, FEEDBACK, body, HTTP_IDEMPOTENCY_KEY="nul-field-name"
    )

    assert_problem(
        response, 422, "x\\u0000", "the name must not contain NUL characters"
    )


@pytest.mark.parametrize(
    ("lead", "field"),
    [
        ({"first_name": "Mel\x00"}, "lead.first_name"),
        ({"address": {"city": "\x00"}}, "lead.address.city"),
    ],
)
def test_nul_in_lead_data_is_422_and_records_nothing(integration_client, lead, field):
    body = {"buyer": "acme", "source": "s", "flow": "f", "lead": lead}
    before = nothing_written()

    response = post_json(integration_client, EVENTS, body)

    assert_problem(response, 422, field, "must not contain NUL characters")
    assert nothing_written() == before


def test_the_event_serializer_refuses_nul_in_lead_data_itself():
    serializer = EventInputSerializer(
        data={"buyer": "a", "source": "s", "flow": "f", "lead": {"email": "\x00"}}
    )

    assert not serializer.is_valid()
    assert serializer.errors["lead"]["email"] == "must not contain NUL characters"


def test_nul_in_a_query_variable_on_the_leadconduit_url_is_problem_json(
    client, delivery, auth
):
    response = client.get(
        f"/feedback?event_id={delivery.event_id}&type=return&reason=a%00b", **auth
    )

    body = assert_problem(response, 422, "reason", "must not contain NUL characters")
    assert body["outcome"] == "error"
    assert body["reason"] == "reason must not contain NUL characters."
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize(
    ("content_type", "data", "field"),
    [
        ("application/x-www-form-urlencoded", "type=return&reason=a%00", "reason"),
        ("application/x-www-form-urlencoded", "type=return&cu%00=1", "cu\\u0000"),
        ("application/json", '{"type": "return", "custom.k": "\\u0000"}', "custom.k"),
    ],
)
def test_nul_in_a_leadconduit_body_is_problem_json_naming_the_variable(
    client, delivery, auth, content_type, data, field
):
    response = client.post(
        f"/feedback?event_id={delivery.event_id}",
        data=data.encode(),
        content_type=content_type,
        HTTP_ACCEPT="text/xml",
        **auth,
    )

    assert response.status_code == 422, response.content
    assert response["Content-Type"] == PROBLEM  # JSON, even when XML was asked for
    body = response.json()
    assert body["errors"][0]["field"] == field
    assert body["outcome"] == "error"
    assert Feedback.objects.count() == 0


def test_nul_in_xml_is_refused_by_the_parser(client, delivery, auth):
    response = client.post(
        f"/feedback?event_id={delivery.event_id}",
        data=b"<feedback><type>return</type><reason>a&#0;b</reason></feedback>",
        content_type="text/xml",
        **auth,
    )

    assert response.status_code == 400
    assert "XML parse error" in response.json()["reason"]
    assert Feedback.objects.count() == 0


def test_undecodable_json_is_400(buyer_client):
    response = buyer_client.generic(
        "POST", FEEDBACK, b'{"note": "\xff"}', content_type="application/json"
    )

    assert response.status_code == 400
    assert "not valid utf-8 text" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"{EVENTS}/abc%00def", "event_id"),
        (f"{IMPORTS}/imp_%00", "public_id"),
        (f"{FEEDBACK}?reference=%00", "reference"),
    ],
)
def test_nul_in_path_and_query_parameters_is_422(buyer_client, url, field):
    response = buyer_client.get(url)

    assert_problem(response, 422, field, "must not contain NUL characters")


def test_nul_in_a_portal_or_admin_query_is_a_plain_400(admin_client):
    response = admin_client.get("/admin/feedback/feedback/?q=%00")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_an_import_file_name_with_nul_is_refused(buyer_client, buyer):
    content = b"event_id,type\r\n" + b"a" * 24 + b",return\r\n"
    name = quote("june\x00.csv")

    response = buyer_client.generic(
        "POST", f"{IMPORTS}?filename={name}", content, content_type="text/csv"
    )

    assert_problem(response, 422, "filename", "must not contain NUL characters")
    with pytest.raises(ValidationError) as refused:
        feedback_import_upload(
            buyer=buyer, user=None, file=content, filename="june\ud800.csv"
        )
    assert refused.value.code == "filename"
    assert FeedbackImport.objects.count() == 0


def test_a_csv_file_with_nul_is_refused_whole_naming_the_line(buyer_client):
    content = "event_id,type,reason\r\n{},return,Wrong\x00number\r\n".format(
        "a" * 24
    ).encode()

    response = buyer_client.generic("POST", IMPORTS, content, content_type="text/csv")

    assert response.status_code == 422
    assert "NUL character (line 2)" in response.json()["detail"]
    assert FeedbackImport.objects.count() == 0
    # A UTF-16 file without its byte-order mark decodes as UTF-8 full of NULs.
    with pytest.raises(ValidationError, match="line 1"):
        decode("event_id,type".encode("utf-16-le"))


# Nesting ------------------------------------------------------------------------


def test_json_nested_to_the_limit_is_accepted(buyer_client, delivery):
    # The item is level 1, so custom may hold 31 more.
    body = {"event_id": delivery.event_id, "type": "conversion"}
    body["custom"] = nested(MAX_DEPTH - 1)

    response = post_json(buyer_client, FEEDBACK, body)

    assert response.status_code == 201, response.content


def test_json_nested_past_the_limit_is_400_naming_where(buyer_client, delivery):
    body = {"event_id": delivery.event_id, "type": "conversion"}
    body["custom"] = nested(MAX_DEPTH)

    response = post_json(buyer_client, FEEDBACK, body)

    # Where the 33rd level opens: under custom (level 1) and 31 levels of "a".
    field = "custom." + ".".join(["a"] * (MAX_DEPTH - 1))
    assert_problem(response, 400, field, "is nested deeper than 32 levels, the limit")
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize("url", [FEEDBACK, EVENTS, "/feedback?event_id=x"])
def test_thousands_of_brackets_are_400_not_a_recursion_error(
    buyer_client, integration_client, url
):
    client = integration_client if url == EVENTS else buyer_client
    body = '{"custom": ' + "[" * 50_000 + "]" * 50_000 + "}"

    response = post_json(client, url, body)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == PROBLEM


def test_dotted_names_past_the_limit_are_400(client, delivery, auth):
    ok = ".".join(["custom"] + ["a"] * (MAX_DEPTH - 1))
    too_deep = ok + ".a"

    accepted = client.get(
        f"/feedback?event_id={delivery.event_id}&type=conversion&{ok}=1", **auth
    )
    refused = client.post(
        f"/feedback?event_id={delivery.event_id}",
        data=f"type=conversion&{too_deep}=1",
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert accepted.status_code == 201, accepted.content
    body = assert_problem(
        refused, 400, too_deep, "is nested deeper than 32 levels, the limit"
    )
    assert body["outcome"] == "error"
    assert Feedback.objects.count() == 1


# Sizes and counts -----------------------------------------------------------------


@pytest.mark.parametrize("idempotency_key", [None, "size-check"])
def test_a_body_over_the_limit_is_413_problem_json(
    buyer_client, delivery, settings, idempotency_key
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"event_id": delivery.event_id, "type": "conversion", "note": "x" * 1000}
    extra = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = post_json(buyer_client, FEEDBACK, body, **extra)

    assert response.status_code == 413
    assert response["Content-Type"] == PROBLEM
    assert Feedback.objects.count() == 0


def test_an_oversized_body_on_the_leadconduit_url_is_413_problem_json(
    client, delivery, auth, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client.post(
        f"/feedback?event_id={delivery.event_id}",
        data="type=return&note=" + "x" * 1000,
        content_type="application/x-www-form-urlencoded",
        HTTP_ACCEPT="text/xml",
        **auth,
    )

    assert response.status_code == 413
    assert response["Content-Type"] == PROBLEM
    assert response.json()["outcome"] == "error"


def test_an_oversized_xml_body_is_413(client, delivery, auth):
    data = b"<feedback><note>" + b"x" * 300_000 + b"</note></feedback>"

    response = client.post(
        f"/feedback?event_id={delivery.event_id}",
        data=data,
        content_type="text/xml",
        **auth,
    )

    assert response.status_code == 413
    assert "262,144 bytes" in response.json()["detail"]


def test_too_many_form_fields_is_400_problem_json(client, delivery, auth, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    data = "&".join(f"v{i}=1" for i in range(11))

    response = client.post(
        f"/feedback?event_id={delivery.event_id}",
        data=data,
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]


def test_too_many_query_variables_is_400_problem_json(buyer_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10

    response = buyer_client.get(FEEDBACK + "?" + "&".join(f"v{i}=1" for i in range(11)))

    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM


def test_unknown_api_urls_answer_a_json_404(buyer_client, client):
    response = buyer_client.get("/api/v1/no-such-thing")
    page = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert response.json()["status"] == 404
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


# Doubtful values ------------------------------------------------------------------


def post_feedback(client, delivery, **fields):
    body = {"event_id": delivery.event_id, "type": "conversion", **fields}
    return post_json(client, FEEDBACK, body)


@pytest.mark.parametrize(
    "revenue", ["\u0661\u0662\u0663", "\uff11\uff12\uff13", "1_000"]
)
def test_revenue_takes_ascii_digits_only(buyer_client, delivery, revenue):
    response = post_feedback(buyer_client, delivery, revenue=revenue)

    assert_problem(
        response, 422, "revenue", "Must be a decimal number in the digits 0-9."
    )


@pytest.mark.parametrize(("score", "stored"), [("4", 4), (4, 4), (" 5 ", 5)])
def test_quality_score_may_be_a_string_of_one_digit(
    buyer_client, delivery, score, stored
):
    response = post_feedback(buyer_client, delivery, quality_score=score)

    assert response.status_code == 201, response.content
    assert response.json()["quality_score"] == stored


@pytest.mark.parametrize("score", [4.0, "4.0", True, "٤"])
def test_quality_score_refuses_what_is_not_one_digit(buyer_client, delivery, score):
    response = post_feedback(buyer_client, delivery, quality_score=score)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "quality_score"


def test_occurred_at_needs_a_time_as_well_as_a_date(buyer_client, delivery):
    day = timezone.now().date().isoformat()

    response = post_feedback(buyer_client, delivery, occurred_at=day)

    body = assert_problem(
        response,
        422,
        "occurred_at",
        "Needs a time as well as the date, e.g. 2026-11-20T10:30:00Z: "
        "a date alone does not say when on that day.",
    )
    assert body["feedback_id"]  # refused and recorded, like any other bad value


def test_a_date_before_2000_is_refused(buyer_client, integration_client, delivery):
    feedback = post_feedback(buyer_client, delivery, occurred_at="1970-01-01T00:00:00Z")
    event = post_json(
        integration_client,
        EVENTS,
        {"buyer": "a", "source": "s", "flow": "f", "delivered_at": "0001-01-01T00:00Z"},
    )

    assert_problem(feedback, 422, "occurred_at", "Cannot be before 2000-01-01.")
    assert_problem(event, 422, "delivered_at", "Cannot be before 2000-01-01.")


def test_delivered_at_needs_a_time_and_price_ascii_digits(integration_client):
    base = {"buyer": "a", "source": "s", "flow": "f"}

    date_only = post_json(
        integration_client, EVENTS, {**base, "delivered_at": "2026-01-02"}
    )
    digits = post_json(integration_client, EVENTS, {**base, "price": "٤٥"})

    assert date_only.status_code == 422
    assert date_only.json()["errors"][0]["field"] == "delivered_at"
    assert_problem(digits, 422, "price", "Must be a decimal number in the digits 0-9.")
    assert DeliveryEvent.objects.count() == 0


def test_xml_elements_with_children_where_text_is_expected(client, delivery, auth):
    url = f"/feedback?event_id={delivery.event_id}"
    reason = client.post(
        url,
        data=b"<feedback><type>return</type><reason><a>x</a></reason></feedback>",
        content_type="text/xml",
        **auth,
    )
    kind = client.post(
        url,
        data=b"<feedback><type><a>return</a></type></feedback>",
        content_type="text/xml",
        **auth,
    )

    # A bad reason is a refusal, recorded; without a readable type nothing is.
    assert reason.status_code == 201, reason.content
    assert reason.json()["outcome"] == "failure"
    assert "reason must be text" in reason.json()["reason"]
    assert kind.status_code == 422
    assert kind.json()["reason"].startswith("type must be text")
    assert Feedback.objects.count() == 1
    assert Feedback.objects.get().reason == ""
