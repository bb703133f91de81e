"""An admin sets up a return config in a real browser, from the source's page to a
test sent to a local receiver and a saved config (the feedback config admin's
acceptance walk)."""

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from sources.models import FeedbackConfig
from tests.factories import SourceFactory
from tests.sources.servers import RecordingServer, Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-9"  # what UserFactory sets
MAPPINGS = (
    ("lead_id", "{{ lead.id }}"),
    ("contact.email", "{{ lead.email|lower }}"),
    ("reason", "{{ feedback.reason }}"),
)
# The mappings applied to the sample return feedback (sources.variables).
SAMPLE_BODY = {
    "lead_id": "L-1001",
    "contact": {"email": "jane@example.com"},
    "reason": "Wrong number",
}
RULES = {
    "op": "and",
    "rules": [
        {"lhv": "feedback.reason", "op": "is not blank"},
        {"lhv": "lead.state", "op": "is equal to", "rhv": "TX"},
    ],
}
SCREENSHOT = Path(tempfile.gettempdir()) / "leadback-e2e-config-admin.png"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    # The live server runs in this process, so the override reaches its guard.
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    reply = Reply(
        status=200,
        body=b'{"status": "accepted", "id": "R-9"}',
        headers={"Content-Type": "application/json"},
    )
    with RecordingServer(reply) as server:
        yield server


@contextmanager
def screenshot_on_failure(page: Page) -> Iterator[None]:
    try:
        yield
    except BaseException:
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        raise


def log_in(page: Page, live_server, user, next_path: str) -> None:
    page.goto(f"{live_server.url}{next_path}")
    expect(page).to_have_url(f"{live_server.url}/admin/login/?next={next_path}")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}{next_path}")


def add_mapping(page: Page, index: int, target: str, value: str) -> None:
    page.locator("#mappings-group .add-row a").click()
    expect(page.locator(f"#mappings-{index}")).to_be_visible()
    page.locator(f"#id_mappings-{index}-target").fill(target)
    page.locator(f"#id_mappings-{index}-value").fill(value)


def add_condition(page: Page, field: str, op: str, value: str | None = None) -> None:
    rows = page.locator(".field-criteria .rb-row")
    index = rows.count()
    page.locator("#id_criteria_rb_add").click()
    row = rows.nth(index)
    expect(row.locator(".rb-field")).to_be_focused()
    row.locator(".rb-field").fill(field)
    row.locator(".rb-op").select_option(op)
    if value is None:
        expect(row.locator(".rb-value")).to_be_hidden()
    else:
        row.locator(".rb-value").fill(value)


def expect_condition(row, field: str, op: str, value: str | None = None) -> None:
    expect(row.locator(".rb-field")).to_have_value(field)
    expect(row.locator(".rb-op")).to_have_value(op)
    if value is None:
        expect(row.locator(".rb-value")).to_be_hidden()
    else:
        expect(row.locator(".rb-value")).to_have_value(value)


def test_an_admin_adds_tests_and_saves_a_return_config(
    page: Page, live_server, staff_user, receiver
):
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    url = receiver.url("/returns")
    source_path = reverse("admin:sources_source_change", args=[source.pk])
    add_path = reverse("admin:sources_feedbackconfig_add")

    with screenshot_on_failure(page):
        log_in(page, live_server, staff_user, source_path)

        page.get_by_role("link", name="Add a feedback config").click()
        expect(page).to_have_url(f"{live_server.url}{add_path}?source={source.pk}")
        expect(page.locator("#id_source")).to_have_value(str(source.pk))
        expect(page.locator("#select2-id_source-container")).to_have_text(
            "Bluesky Leads"
        )

        page.locator("#id_kind").select_option("return")
        page.locator("#id_method").select_option("json")
        page.locator("#id_url").fill(url)
        for index, (target, value) in enumerate(MAPPINGS):
            add_mapping(page, index, target, value)
        expect(page.locator("#mappings-group tr.dynamic-mappings")).to_have_count(3)

        builder = page.locator(".field-criteria .rule-builder")
        textarea = builder.locator("textarea.rb-json")
        expect(textarea).to_be_hidden()
        add_condition(page, "feedback.reason", "is not blank")
        add_condition(page, "lead.state", "is equal to", "TX")

        builder.locator(".rb-toggle").click()
        expect(textarea).to_be_visible()
        expect(builder.locator(".rb-builder")).to_be_hidden()
        expect(textarea).to_have_value(json.dumps(RULES, indent=2))

        builder.locator(".rb-toggle").click()
        expect(textarea).to_be_hidden()
        rows = builder.locator(".rb-row")
        expect(rows).to_have_count(2)
        expect_condition(rows.nth(0), "feedback.reason", "is not blank")
        expect_condition(rows.nth(1), "lead.state", "is equal to", "TX")
        expect(builder.locator(".rb-match")).to_have_value("and")

        page.locator("#id_outcome_search_term").fill("accepted")
        page.locator("#id_outcome_search_path").fill("status")
        page.locator("#id_reference_path").fill("id")

        result = page.locator("#config-preview-result")
        page.locator("#preview-request").click()
        request = result.locator("#config-preview-request")
        expect(request).to_contain_text(f"POST {url}\n")
        expect(result).to_contain_text("Built from a sample return feedback.")
        expect(result).to_contain_text("Criteria pass.")
        expect(result.locator("#config-preview-outcome")).to_have_count(0)
        head, body = request.inner_text().split("\n\n", 1)
        assert "Content-Type: application/json" in head.splitlines()
        assert json.loads(body) == SAMPLE_BODY
        assert receiver.requests == []

        page.locator("#send-test").click()
        outcome = result.locator("#config-preview-outcome")
        expect(outcome).to_contain_text("Outcome: success")
        expect(outcome).to_contain_text("reference: R-9")
        expect(result.locator("#config-preview-response")).to_contain_text("HTTP 200")
        assert len(receiver.requests) == 1
        sent = receiver.last
        assert (sent.method, sent.path) == ("POST", "/returns")
        assert sent.header("Content-Type") == "application/json"
        assert json.loads(sent.body) == SAMPLE_BODY

        page.locator("input[name='_save']").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "was added successfully"
        )

    config = FeedbackConfig.objects.get()
    assert (config.source, config.kind, config.method, config.url) == (
        source,
        "return",
        "json",
        url,
    )
    assert config.criteria == RULES
    assert (
        config.outcome_search_term,
        config.outcome_search_path,
        config.reference_path,
    ) == ("accepted", "status", "id")
    assert [(m.target, m.value) for m in config.mappings.all()] == list(MAPPINGS)
    assert len(receiver.requests) == 1  # saving sends nothing
