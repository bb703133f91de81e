"""Hostile input through every intake format: never a 5xx, nothing half-written.

Hypothesis drives arbitrary text (NUL and lone surrogates mixed in on purpose,
as JSON can carry `\\ud800`), nesting and sizes through the JSON API, the
LeadConduit URL (query, form, JSON, XML), delivery events, CSV uploads and path
and query parameters. On a 4xx nothing is written; whatever a 2xx wrote is what
its answer reports. CI's PostgreSQL run is where this bites: SQLite stores a NUL
that PostgreSQL's text and JSONB refuse.
"""

import csv
import io
import json
from datetime import timedelta
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from feedback.imports.models import FeedbackImport
from feedback.imports.services import feedback_import_process
from feedback.models import DeliveryEvent, Feedback, IdempotencyKey, Lead
from feedback.safetext import find_problem
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db

EVENT_ID = "65a1f0c2e4b0a1b2c3d4e5f6"
REFERENCE = "CRM-4711"
FEEDBACK = "/api/v1/feedback"
EVENTS = "/api/v1/events"
IMPORTS = "/api/v1/feedback/imports"
FIELDS = (
    "event_id",
    "reference",
    "type",
    "outcome_code",
    "reason",
    "revenue",
    "quality_score",
    "occurred_at",
    "custom",
    "note",
)

hostile = hypothesis_settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What a careless or malicious sender puts in text, beside whatever Hypothesis finds.
SPECIAL = [
    "\x00",
    "\ud800",
    "\udfff",
    "\udbff\x00",
    "a\x00b",
    "😀",
    "é",
    ".",
    "a.b",
    "%00",
    "&#0;",
    "[{",
    "\\",
    '"',
    "1e999",
    "١٢٣",
    "0001-01-01T00:00:00+05:00",
    "2026-11-20",
    " ",
]
text = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(st.text(max_size=6), st.sampled_from(SPECIAL)), max_size=4).map(
        "".join
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)
    ),
    max_leaves=10,
)
kinds = st.one_of(st.sampled_from(["conversion", "return", "status"]), text)
feedback_items = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.just(EVENT_ID), text),
        "type": kinds,
    },
    optional={
        "reference": st.one_of(st.just(REFERENCE), text),
        "reason": values,
        "revenue": st.one_of(st.sampled_from(["12.50", "١٢", "1_0"]), values),
        "quality_score": st.one_of(st.sampled_from(["4", 4, "٤"]), values),
        "occurred_at": st.one_of(st.just("2026-11-20T10:30:00Z"), values),
        "custom": values,
        "note": values,
        "outcome_code": st.one_of(st.just("converted"), text),
    },
)
event_items = st.fixed_dictionaries(
    {
        "buyer": st.one_of(st.just("acme-insurance"), text),
        "source": st.one_of(st.just("bluesky-leads"), text),
        "flow": st.one_of(st.just("auto"), text),
    },
    optional={
        "event_id": st.one_of(st.just("65a1f0c2e4b0a1b2c3d4e5f7"), text),
        "delivered_at": st.one_of(
            st.sampled_from(
                ["2026-11-20T10:30:00Z", "2026-11-20", "0001-01-01T00:00Z"]
            ),
            values,
        ),
        "price": st.one_of(st.sampled_from(["45.00", "٤٥"]), values),
        "step": values,
        "reference": values,
        "lead": st.one_of(st.dictionaries(text, values, max_size=4), values),
    },
)
variable_names = st.one_of(
    st.sampled_from([*FIELDS, "custom.plan", "lead.email", "custom.a.b"]), text
)


@pytest.fixture
def delivery(buyer):
    return DeliveryEventFactory(
        buyer=buyer,
        event_id=EVENT_ID,
        reference=REFERENCE,
        delivered_at=timezone.now() - timedelta(days=1),
    )


@pytest.fixture
def auth(buyer_key):
    return {"HTTP_X_API_KEY": buyer_key[1]}


def counts():
    return {
        "feedback": Feedback.objects.count(),
        "events": DeliveryEvent.objects.count(),
        "leads": Lead.objects.count(),
        "imports": FeedbackImport.objects.count(),
        "idempotency": IdempotencyKey.objects.count(),
    }


def written(before):
    after = counts()
    return {name: after[name] - before[name] for name in after}


def post_json(client, url, data, **extra):
    # json.dumps writes lone surrogates as \ud800 escapes, as a sender's would.
    return post_raw(client, url, json.dumps(data), **extra)


def post_raw(client, url, text, **extra):
    return client.generic(
        "POST", url, text.encode(), content_type="application/json", **extra
    )


def url_encoded(variables):
    return urlencode(variables, errors="surrogatepass")


def answered(response):
    assert response.status_code < 500, response.content
    if not response.content:
        return {}
    return response.json()


# JSON API ----------------------------------------------------------------------------


@hostile
@given(item=feedback_items, key=st.one_of(st.none(), text))
@example(item={"event_id": EVENT_ID, "type": "conversion", "reason": "\x00"}, key=None)
@example(
    item={"event_id": EVENT_ID, "type": "status", "custom": {"\ud800": "x"}}, key="k"
)
@example(item={"reference": "\x00", "type": "return"}, key=None)
@example(item={"event_id": EVENT_ID, "type": "return", "x\x00": 1}, key="k2")
def test_json_api_one_feedback(buyer_client, delivery, item, key):
    before = counts()
    extra = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}

    response = post_json(buyer_client, FEEDBACK, item, **extra)

    body = answered(response)
    new = written(before)
    replayed = response.get("Idempotency-Replayed") == "true"
    expected = 1 if "feedback_id" in body and not replayed else 0
    assert new["feedback"] == expected, body
    assert new["events"] == new["leads"] == new["imports"] == 0


@hostile
@given(
    items=st.lists(st.one_of(feedback_items, values), min_size=1, max_size=5),
    extra=st.dictionaries(text, values, max_size=1),
)
@example(
    items=[
        {"event_id": EVENT_ID, "type": "conversion"},
        {"event_id": EVENT_ID, "type": "conversion", "note": "\x00"},
    ],
    extra={},
)
def test_json_api_items(buyer_client, delivery, items, extra):
    before = counts()

    response = post_json(buyer_client, FEEDBACK, {"items": items, **extra})

    body = answered(response)
    new = written(before)
    if response.status_code == 200:
        reported = sum(
            1 for r in body["results"] if "feedback" in r or "feedback_id" in r
        )
        assert new["feedback"] == reported
    else:
        assert new["feedback"] == 0, body
    assert new["events"] == new["imports"] == 0


@hostile
@given(depth=st.integers(0, 3000), leaf=values, listed=st.booleans())
@example(depth=31, leaf="x", listed=False)
@example(depth=32, leaf="x", listed=False)
@example(depth=100_000, leaf=None, listed=True)
def test_json_api_nesting(buyer_client, delivery, depth, leaf, listed):
    opening, closing = ("[", "]") if listed else ('{"a":', "}")
    custom = opening * depth + json.dumps(leaf) + closing * depth
    body = f'{{"event_id": "{EVENT_ID}", "type": "status", "custom": {custom}}}'
    before = counts()

    response = post_raw(buyer_client, FEEDBACK, body)

    reply = answered(response)
    # The body is level 1, so custom may hold 31 more.
    if 1 + depth + levels(leaf) > 32:
        assert response.status_code == 400
        assert "32 levels" in reply["detail"]
    else:
        assert response.status_code != 400, reply
    assert written(before)["feedback"] == (1 if "feedback_id" in reply else 0)


def levels(value):
    if isinstance(value, dict):
        return 1 + max(map(levels, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(levels, value), default=0)
    return 0


@hostile
@given(size=st.integers(0, 4000))
def test_body_sizes_around_the_limit(buyer_client, delivery, size):
    body = json.dumps({"event_id": EVENT_ID, "type": "status", "note": "x" * size})
    before = counts()

    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2000):
        response = post_raw(buyer_client, FEEDBACK, body)

    reply = answered(response)
    if len(body) > 2000:
        assert response.status_code == 413
        assert response["Content-Type"] == "application/problem+json"
    else:
        assert response.status_code != 413
    assert written(before)["feedback"] == (1 if "feedback_id" in reply else 0)


# Events ------------------------------------------------------------------------------


@hostile
@given(event=st.one_of(event_items, values))
@example(event={"buyer": "a", "source": "s", "flow": "f", "lead": {"email": "\x00"}})
@example(event={"buyer": "a", "source": "s", "flow": "f", "lead": {"\ud800": 1}})
@example(event={"buyer": "a", "source": "s", "flow": "f", "step": "\x00"})
@example(event="\ud800")
def test_events_one(integration_client, event):
    before = counts()

    response = post_json(integration_client, EVENTS, event)

    body = answered(response)
    new = written(before)
    if response.status_code == 201:
        assert new["events"] <= 1
        assert DeliveryEvent.objects.filter(event_id=body["event_id"]).exists()
    else:
        assert new == dict.fromkeys(new, 0), body
    assert new["feedback"] == 0


@hostile
@given(events=st.lists(st.one_of(event_items, values), min_size=1, max_size=4))
@example(
    events=[
        {"buyer": "a", "source": "s", "flow": "f"},
        {"buyer": "a", "source": "s", "flow": "f", "lead": {"email": "\x00"}},
    ]
)
def test_events_items(integration_client, events):
    before = counts()

    response = post_json(integration_client, EVENTS, {"items": events})

    body = answered(response)
    new = written(before)
    if response.status_code == 200:
        recorded = [r["event"]["event_id"] for r in body["results"] if "event" in r]
        assert new["events"] <= len(recorded)
        assert DeliveryEvent.objects.filter(event_id__in=recorded).count() == len(
            set(recorded)
        )
    else:
        assert new["events"] == new["leads"] == 0, body


# The LeadConduit-compatible URL ------------------------------------------------------


def assert_leadconduit_wrote(before, response):
    body = answered(response)
    stored = body.get("outcome") in ("success", "failure")
    assert written(before)["feedback"] == (1 if stored else 0), body


@hostile
@given(variables=st.dictionaries(variable_names, text, max_size=6))
@example(variables={"type": "return", "reason": "\x00"})
@example(variables={"event_id": "\x00"})
@example(variables={"type": "return", "reference": "R\x00"})
def test_leadconduit_query(client, delivery, auth, variables):
    before = counts()
    query = url_encoded({"event_id": EVENT_ID, **variables})

    response = client.get(f"/feedback?{query}", **auth)

    assert_leadconduit_wrote(before, response)


@hostile
@given(variables=st.dictionaries(variable_names, text, max_size=6))
@example(variables={"type": "return", "custom.k\x00": "v"})
def test_leadconduit_form(client, delivery, auth, variables):
    before = counts()

    response = client.post(
        f"/feedback?event_id={EVENT_ID}",
        data=url_encoded(variables),
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert_leadconduit_wrote(before, response)


@hostile
@given(
    variables=st.dictionaries(variable_names, values, max_size=6),
    dots=st.integers(1, 100),
)
@example(variables={"type": "return", "note": "\ud800"}, dots=1)
@example(variables={"type": "conversion"}, dots=31)
@example(variables={"type": "conversion"}, dots=32)
def test_leadconduit_json(client, delivery, auth, variables, dots):
    variables = {**variables, ".".join(["custom"] + ["a"] * dots): 1}
    before = counts()

    response = post_json(client, f"/feedback?event_id={EVENT_ID}", variables, **auth)

    assert_leadconduit_wrote(before, response)
    if dots >= 32 and find_problem(variables) is None:
        assert response.status_code == 400  # past the limit, unless refused sooner


@hostile
@given(
    variables=st.dictionaries(st.sampled_from(FIELDS), text, max_size=6),
    depth=st.integers(0, 400),
)
@example(variables={"type": "return", "reason": "a\x00"}, depth=0)
def test_leadconduit_xml(client, delivery, auth, variables, depth):
    fields = "".join(
        f"<{name}>{escape(value)}</{name}>" for name, value in variables.items()
    )
    deep = "<custom>" + "<a>" * depth + "x" + "</a>" * depth + "</custom>"
    document = f"<feedback>{fields}{deep}</feedback>"
    before = counts()

    response = client.post(
        f"/feedback?event_id={EVENT_ID}",
        data=document.encode("utf-8", "surrogatepass"),
        content_type="text/xml",
        **auth,
    )

    assert_leadconduit_wrote(before, response)


# CSV uploads, path and query parameters -----------------------------------------------


@hostile
@given(
    rows=st.lists(
        st.tuples(st.one_of(st.just(EVENT_ID), text), kinds, text),
        min_size=1,
        max_size=4,
    ),
    name=text,
)
@example(rows=[[EVENT_ID, "return", "Wrong\x00number"]], name="june.csv")
@example(rows=[[EVENT_ID, "return", "ok"]], name="june\x00.csv")
def test_csv_upload(buyer_client, delivery, rows, name):
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(["event_id", "type", "reason"])
    writer.writerows(rows)
    content = stream.getvalue().encode("utf-8", "surrogatepass")
    before = counts()

    response = buyer_client.generic(
        "POST",
        f"{IMPORTS}?filename={quote(name, errors='surrogatepass')}",
        content,
        content_type="text/csv",
    )

    body = answered(response)
    new = written(before)
    if response.status_code == 202:
        assert new["imports"] == 1
        feedback_import = feedback_import_process(
            import_id=FeedbackImport.objects.get(public_id=body["id"]).pk
        )
        assert feedback_import.status == FeedbackImport.Status.DONE
        assert feedback_import.processed_rows == feedback_import.total_rows
        assert written(before)["feedback"] <= feedback_import.total_rows
    else:
        assert new["imports"] == 0, body
        assert new["feedback"] == 0


@hostile
@given(segment=text, query=st.dictionaries(text, text, max_size=3))
@example(segment="\x00", query={})
@example(segment="imp_" + "a" * 24, query={"outcome": "\x00"})
@example(segment="x", query={"cursor": "garbage", "page_size": "\u0661\u0660"})
@example(segment="x", query={"since": "0001-01-01T00:00:00+05:00", "kind": "é"})
def test_path_and_query_parameters(buyer_client, integration_client, segment, query):
    path = quote(segment, safe="", errors="surrogatepass")
    encoded = url_encoded(query)

    for client, url in (
        (integration_client, f"{EVENTS}/{path}?{encoded}"),
        (buyer_client, f"{IMPORTS}/{path}?{encoded}"),
        (buyer_client, f"{IMPORTS}/{path}/refused.csv?{encoded}"),
        (buyer_client, f"{FEEDBACK}?{encoded}"),
        (buyer_client, f"/api/v1/{path}"),
    ):
        response = client.get(url)
        assert response.status_code < 500, (url, response.content)
