"""The feedback config admin: saving, secrets, checks, preview and send test."""

import json
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse
from standardwebhooks import Webhook

from sources.models import FeedbackConfig, FieldMapping
from tests.factories import FeedbackFactory, SourceFactory
from tests.sources.servers import RecordingServer, Reply, SoapServer

pytestmark = pytest.mark.django_db

ADD = reverse("admin:sources_feedbackconfig_add")
PREVIEW_ADD = reverse("admin:sources_feedbackconfig_preview_add")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    reply = Reply(
        status=200,
        body=b'{"status": "accepted", "id": "R-77", "message": " thanks "}',
        headers={"Content-Type": "application/json"},
    )
    with RecordingServer(reply) as server:
        yield server


def config_form(source, *, mappings=(), **overrides) -> dict[str, str]:
    data = {
        "source": str(source.pk),
        "kind": "return",
        "enabled": "on",
        "method": "json",
        "url": "https://returns.example/api",
        "http_method": "POST",
        "timeout_s": "10",
        "headers": "{}",
        "auth_type": "none",
        "auth_username": "",
        "auth_header_name": "",
        "auth_secret": "",
        "signing_secret": "",
        "soap_operation": "",
        "soap_version": "1.1",
        "criteria": "",
        "outcome_search_term": "",
        "outcome_search_path": "",
        "outcome_on_match": "success",
        "reason_path": "",
        "default_reason": "",
        "reference_path": "",
        "mappings-TOTAL_FORMS": str(len(mappings)),
        "mappings-INITIAL_FORMS": "0",
        "mappings-MIN_NUM_FORMS": "0",
        "mappings-MAX_NUM_FORMS": "1000",
    }
    for index, (target, value) in enumerate(mappings):
        data |= {
            f"mappings-{index}-position": str(index),
            f"mappings-{index}-target": target,
            f"mappings-{index}-value": value,
        }
    return data | {key: str(value) for key, value in overrides.items()}


MAPPINGS = (
    ("lead_id", "{{ lead.id }}"),
    ("contact.email", "{{ lead.email|lower }}"),
    ("reason", "{{ feedback.reason }}"),
)


def test_an_admin_adds_a_json_return_config_with_mappings(staff_client):
    source = SourceFactory()

    response = staff_client.post(ADD, config_form(source, mappings=MAPPINGS))

    assert response.status_code == 302, response.content.decode()[:2000]
    config = FeedbackConfig.objects.get()
    assert (config.source, config.kind, config.method) == (source, "return", "json")
    assert [(m.target, m.value) for m in config.mappings.all()] == list(MAPPINGS)


def test_secrets_are_write_only_and_kept_when_left_blank(staff_client):
    source = SourceFactory()
    staff_client.post(
        ADD,
        config_form(
            source, auth_type="bearer", auth_secret="tok-123456", signing_enabled="on"
        ),
    )
    config = FeedbackConfig.objects.get()
    assert config.auth_secret == "tok-123456"
    assert config.signing_secret.startswith("whsec_")
    change = reverse("admin:sources_feedbackconfig_change", args=[config.pk])

    page = staff_client.get(change).content.decode()
    assert "tok-123456" not in page
    assert config.signing_secret not in page
    assert "A value is stored; leave blank to keep it." in page

    form = config_form(source, auth_type="bearer", signing_enabled="on")
    form["url"] = "https://returns.example/v2"
    response = staff_client.post(change, form)
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.url == "https://returns.example/v2"
    assert config.auth_secret == "tok-123456"


@pytest.mark.parametrize(
    ("overrides", "mappings", "message"),
    [
        ({"method": "soap"}, (), "A SOAP config needs the operation to call."),
        ({"auth_type": "basic"}, (), "This authentication needs a username."),
        (
            {"auth_type": "wsse", "auth_username": "u", "auth_secret": "p"},
            (),
            "WS-Security is only for SOAP configs.",
        ),
        ({"headers": '{"Bad Header": "x"}'}, (), "Bad Header"),
        ({"headers": '{"X-A": 1}'}, (), "header names and text values"),
        (
            {"criteria": '{"rules": [{"lhv": "lead.state", "op": "equals"}]}'},
            (),
            "unknown operator",
        ),
        ({"outcome_search_term": "(unclosed"}, (), "outcome_search_term"),
        ({}, (("email", "{{ lead.email "),), "This template does not work"),
        ({"url": "ftp://returns.example/"}, (), "Use an http:// or https:// URL."),
        (
            {"url": "http://169.254.169.254/latest/meta-data/"},
            (),
            "Refused by the SSRF guard: 169.254.169.254 is an internal address",
        ),
        (
            {"url": "http://[fec0::1]/hook"},
            (),
            "Refused by the SSRF guard: fec0::1 is an internal address",
        ),
    ],
)
def test_a_broken_config_is_refused_with_the_reason(
    staff_client, overrides, mappings, message
):
    source = SourceFactory()

    response = staff_client.post(
        ADD, config_form(source, mappings=mappings, **overrides)
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not FeedbackConfig.objects.exists()


def test_preview_shows_the_exact_request_for_a_sample(staff_client):
    source = SourceFactory()

    response = staff_client.post(
        PREVIEW_ADD,
        config_form(
            source,
            mappings=MAPPINGS,
            auth_type="basic",
            auth_username="partner",
            auth_secret="s3cret-pw",
        ),
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "POST https://returns.example/api" in page
    assert "Content-Type: application/json" in page
    assert "Authorization: &lt;redacted&gt;" in page
    assert "s3cret-pw" not in page
    body = json.dumps(
        {
            "lead_id": "L-1001",
            "contact": {"email": "jane@example.com"},
            "reason": "Wrong number",
        },
        separators=(",", ":"),
    )
    assert json.loads(_body(page)) == json.loads(body)
    assert "Criteria pass." in page
    assert not FeedbackConfig.objects.exists()


def _body(page: str) -> str:
    start = page.index('id="config-preview-request">')
    pre = page[start : page.index("</pre>", start)]
    return pre.strip().split("\n")[-1].replace("&quot;", '"')


def test_preview_reads_a_real_delivery_and_its_criteria(staff_client):
    feedback = FeedbackFactory(kind="return", reason="")
    config_data = config_form(
        feedback.source,
        mappings=(("event", "{{ event.id }}"),),
        criteria=json.dumps(
            {"rules": [{"lhv": "feedback.reason", "op": "is not blank"}]}
        ),
    )
    config_data["_preview_event_id"] = feedback.delivery.event_id

    page = staff_client.post(PREVIEW_ADD, config_data).content.decode()

    assert f"latest feedback of event <code>{feedback.delivery.event_id}" in page
    assert feedback.delivery.event_id in _body(page)
    assert "Criteria fail: this feedback would be skipped" in page


def test_preview_of_an_unknown_event_says_so(staff_client):
    data = config_form(SourceFactory(), mappings=MAPPINGS)
    data["_preview_event_id"] = "0" * 24

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert f"No feedback found for event {'0' * 24}." in page


def test_preview_lists_form_errors_instead_of_building(staff_client):
    data = config_form(SourceFactory(), method="soap")

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "soap_operation: A SOAP config needs the operation to call." in page
    assert "config-preview-request" not in page


def test_send_test_reaches_the_source_and_reads_its_answer(staff_client, receiver):
    source = SourceFactory()
    data = config_form(
        source,
        mappings=MAPPINGS,
        url=receiver.url("/returns"),
        signing_enabled="on",
        signing_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        outcome_search_term="accepted",
        outcome_search_path="status",
        reason_path="message",
        reference_path="id",
    )
    data["_action"] = "send"

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "Outcome: success" in page
    assert 'reason: <span class="config-preview-reason">thanks</span>' in page
    assert "reference: R-77" in page
    assert "HTTP 200" in page
    arrived = receiver.last
    assert arrived.path == "/returns"
    assert json.loads(arrived.body)["contact"] == {"email": "jane@example.com"}
    Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").verify(
        arrived.body, arrived.header_dict
    )


def test_send_test_shows_a_refusal(staff_client):
    reply = Reply(status=422, body=b"<p class='err'>Duplicate lead</p>")
    with RecordingServer(reply) as server:
        data = config_form(
            SourceFactory(),
            mappings=MAPPINGS,
            url=server.url("/r"),
            outcome_search_term="accepted",
            reason_path="p.err",
            reference_path="",
        )
        data["_action"] = "send"
        page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "Outcome: failure" in page
    assert "Duplicate lead" in page


def test_preview_needs_staff_and_post(staff_client):
    assert Client().post(PREVIEW_ADD, {}).status_code == 302  # to the login page
    assert staff_client.get(PREVIEW_ADD).status_code == 405


def test_the_source_page_links_its_configs(staff_client):
    source = SourceFactory()
    config = FeedbackConfig.objects.create(
        source=source, kind="return", method="json", url="https://r.example/"
    )
    FieldMapping.objects.create(config=config, target="a", value="b")

    page = staff_client.get(
        reverse("admin:sources_source_change", args=[source.pk])
    ).content.decode()

    assert reverse("admin:sources_feedbackconfig_change", args=[config.pk]) in page
    assert f"{ADD}?source={source.pk}" in page


def test_send_test_calls_a_soap_service_and_reads_its_result(staff_client):
    with SoapServer() as server:
        data = config_form(
            SourceFactory(),
            mappings=(
                ("EventId", "{{ event.id }}"),
                ("Reason", "{{ feedback.reason }}"),
                ("Amount", "0"),
            ),
            method="soap",
            url=server.wsdl_url,
            soap_operation="RecordReturn",
            outcome_search_term="ok",
            outcome_search_path="Status",  # as in DESIGN §9
        )
        data["_action"] = "send"
        page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "Outcome: success" in page, page
    assert server.calls[0].operation == "RecordReturn"
    assert server.calls[0].arguments["Reason"] == "Wrong number"


def test_a_query_config_always_gets(staff_client):
    data = config_form(SourceFactory(), mappings=MAPPINGS, method="query")
    assert data["http_method"] == "POST"

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "GET https://returns.example/api?lead_id=L-1001&amp;contact.email=" in page


def test_preview_redacts_credential_headers_but_shows_others(staff_client):
    data = config_form(
        SourceFactory(),
        mappings=MAPPINGS,
        headers=json.dumps({"X-Partner-Token": "tok-999", "X-Partner": "leadback"}),
    )

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "X-Partner-Token: &lt;redacted&gt;" in page
    assert "tok-999" not in page
    assert "X-Partner: leadback" in page
