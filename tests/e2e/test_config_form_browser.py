"""The feedback config form at 1366 and 390 px: only the sections the chosen
method uses, a jump bar to criteria, fields and preview, and criteria values
that show a long list whole. Screenshots go to var/screenshots/."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import Page, expect

from sources.models import FeedbackConfig
from tests.e2e.test_config_admin_browser import log_in
from tests.factories import SourceFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"
WIDTHS = {
    "laptop": {"width": 1366, "height": 768},
    "phone": {"width": 390, "height": 844},
}
# A long list of states, as a buyer's criteria hold them.
STATES = (
    "AL, AK, AZ, AR, CA, CO, CT, DE, FL, GA, HI, ID, IL, "
    "IN, IA, KS, KY, LA, ME, MD, MA, MI, MN, MS, MO, MT"
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def section(page: Page, name: str):
    return page.locator(
        "fieldset", has=page.locator(".fieldset-heading", has_text=name)
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_form_shows_what_the_method_uses(
    page: Page, live_server, staff_user, width
):
    source = SourceFactory(name="Bluesky Leads")
    config = FeedbackConfig.objects.create(
        source=source,
        kind="return",
        method="json",
        url="https://returns.example/api",
        criteria={
            "op": "and",
            "rules": [{"lhv": "lead.state", "op": "is included in", "rhv": STATES}],
        },
    )
    page.set_viewport_size(WIDTHS[width])
    path = reverse("admin:sources_feedbackconfig_change", args=[config.pk])
    log_in(page, live_server, staff_user, path)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # A JSON config: no SOAP and no batch fields; URL and answer reading show.
    for hidden in ("SOAP", "Batch file"):
        expect(section(page, hidden)).to_be_hidden()
    for shown in ("Criteria", "Authentication", "Reading the answer"):
        expect(section(page, shown)).to_be_visible()
    expect(page.locator(".form-row.field-url")).to_be_visible()
    expect(page.locator(".form-row.field-wsse_password_digest")).to_be_hidden()
    # The criteria's long list shows whole: its box is taller than one line.
    value = page.locator(".field-criteria .rb-value").first
    expect(value).to_have_value(STATES)
    box = value.bounding_box()
    assert box is not None
    scroll = value.evaluate("(el) => el.scrollHeight - el.clientHeight")
    assert scroll <= 2, "the list is cut off"
    page.screenshot(path=str(SCREENSHOTS / f"config-json-{width}.png"), full_page=True)

    # The jump bar reaches the fields sent and the preview.
    page.get_by_role("link", name="Fields sent").click()
    expect(page.locator("#mappings-group")).to_be_in_viewport()
    page.get_by_role("link", name="Preview and send test").click()
    expect(page.locator("#config-preview")).to_be_in_viewport()

    # A batch config: its file section, and no URL, HTTP method, sync or answer.
    page.locator("#id_method").select_option("batch")
    expect(section(page, "Batch file")).to_be_visible()
    for hidden in ("SOAP", "Authentication", "Reading the answer", "Signing"):
        expect(section(page, hidden)).to_be_hidden()
    for row in ("url", "http_method", "sync"):
        expect(page.locator(f".form-row.field-{row}")).to_be_hidden()
    page.screenshot(path=str(SCREENSHOTS / f"config-batch-{width}.png"), full_page=True)

    page.locator("#id_method").select_option("soap")
    expect(section(page, "SOAP")).to_be_visible()
    expect(page.locator(".form-row.field-wsse_password_digest")).to_be_visible()
    expect(page.locator(".form-row.field-http_method")).to_be_hidden()
    assert json.loads(page.locator("#id_criteria").input_value())["rules"][0]["rhv"]
