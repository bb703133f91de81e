"""The rule set builder in a real browser: simple rows, advanced JSON, round trips."""

import json
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.urls("tests.e2e.criteria_urls")]

NESTING = "This rule set uses nesting; edit it as JSON."
TWO_RULES = {
    "op": "and",
    "rules": [
        {"lhv": "lead.state", "op": "is equal to", "rhv": "TX"},
        {"lhv": "feedback.reason", "op": "is not blank"},
    ],
}
ZIP_RULE = {
    "lhv": "lead.postal_code",
    "op": "is included in",
    "rhv": ["78701", "78702"],
}


def open_page(page: Page, live_server, initial: object = None) -> None:
    query = f"?{urlencode({'initial': json.dumps(initial)})}" if initial else ""
    page.goto(f"{live_server.url}/criteria/{query}")


def submit(page: Page) -> dict:
    with page.expect_response(
        lambda response: response.request.method == "POST"
    ) as info:
        page.locator("#submit").click()
    response = info.value
    assert response.status == 200, response.text()
    return response.json()


def test_build_rules_edit_them_as_json_and_submit(page: Page, live_server):
    open_page(page, live_server)
    textarea = page.locator("#id_criteria")
    expect(page.locator(".rb-builder")).to_be_visible()
    expect(textarea).to_be_hidden()

    page.locator(".rb-add").click()
    first = page.locator(".rb-row").nth(0)
    expect(first.locator(".rb-field")).to_be_focused()
    first.get_by_label("Field").fill("lead.state")
    first.get_by_label("Operator").select_option("is equal to")
    first.get_by_label("Value").fill("TX")
    page.get_by_role("button", name="Add condition").click()
    second = page.locator(".rb-row").nth(1)
    second.locator(".rb-field").fill("feedback.reason")
    second.locator(".rb-op").select_option("is not blank")
    expect(second.locator(".rb-value")).to_be_hidden()

    page.locator(".rb-toggle").click()
    expect(textarea).to_be_visible()
    expect(page.locator(".rb-builder")).to_be_hidden()
    expect(page.locator(".rb-toggle")).to_have_text("Simple")
    expect(textarea).to_have_value(json.dumps(TWO_RULES, indent=2))

    three_rules = {"op": "and", "rules": [*TWO_RULES["rules"], ZIP_RULE]}
    textarea.fill(json.dumps(three_rules))
    page.locator(".rb-toggle").click()
    expect(page.locator(".rb-row")).to_have_count(3)
    expect(textarea).to_be_hidden()
    expect(page.locator(".rb-toggle")).to_have_text("Advanced (JSON)")
    third = page.locator(".rb-row").nth(2)
    expect(third.locator(".rb-field")).to_have_value("lead.postal_code")
    expect(third.locator(".rb-op")).to_have_value("is included in")
    expect(third.locator(".rb-value")).to_have_value("78701, 78702")
    expect(page.locator(".rb-row").nth(1).locator(".rb-value")).to_be_hidden()

    # A change elsewhere rewrites the JSON; the untouched list stays a list.
    page.locator(".rb-match").select_option(label="any")

    posted = submit(page)
    assert posted["criteria"] == {**three_rules, "op": "or"}
    assert json.loads(posted["raw"]) == posted["criteria"]


def test_going_advanced_and_back_without_edits_changes_nothing(page: Page, live_server):
    stored = {
        "op": "or",
        "rules": [{"lhv": "event.price", "op": "is between", "rhv": 10}],
    }
    open_page(page, live_server, stored)
    expect(page.locator(".rb-row")).to_have_count(1)
    expect(page.locator(".rb-match")).to_have_value("or")
    expect(page.locator(".rb-value")).to_have_value("10")
    text = json.dumps(stored, indent=2)
    expect(page.locator("#id_criteria")).to_have_value(text)

    page.locator(".rb-toggle").click()
    expect(page.locator("#id_criteria")).to_have_value(text)
    page.locator(".rb-toggle").click()
    expect(page.locator(".rb-row")).to_have_count(1)

    assert submit(page)["criteria"] == stored


def test_a_builder_change_keeps_values_it_did_not_touch(page: Page, live_server):
    stored = {
        "op": "and",
        "rules": [
            {"lhv": "event.price", "op": "is greater than", "rhv": 10.5},
            {"lhv": "lead.state", "op": "is included in", "rhv": ["TX", "CA"]},
            {"lhv": "lead.email", "op": "is blank", "rhv": ""},
            {"lhv": "lead.phone_1", "op": "format is valid"},
        ],
    }
    open_page(page, live_server, stored)
    expect(page.locator(".rb-row")).to_have_count(4)

    page.locator(".rb-match").select_option("or")
    page.locator(".rb-toggle").click()

    written = json.loads(page.locator("#id_criteria").input_value())
    assert written == {**stored, "op": "or"}

    # A value typed over a list is the text as typed (a comma-separated list).
    page.locator(".rb-toggle").click()
    page.locator(".rb-row").nth(1).locator(".rb-value").fill("TX, NM")
    assert submit(page)["criteria"]["rules"][1]["rhv"] == "TX, NM"


def test_removing_every_condition_means_no_criteria(page: Page, live_server):
    open_page(page, live_server, TWO_RULES)
    expect(page.locator(".rb-row")).to_have_count(2)

    page.get_by_role("button", name="Remove condition").first.click()
    page.get_by_role("button", name="Remove condition").first.click()

    expect(page.locator(".rb-row")).to_have_count(0)
    expect(page.locator(".rb-empty")).to_be_visible()
    expect(page.locator("#id_criteria")).to_have_value("")
    assert submit(page)["criteria"] is None


def test_a_nested_rule_set_stays_in_advanced_mode(page: Page, live_server):
    nested = {
        "op": "and",
        "rules": [
            {
                "lhv": "lead.state",
                "op": "is equal to",
                "rhv": "TX",
                "rule_set": {
                    "op": "or",
                    "rules": [{"lhv": "lead.email", "op": "is blank"}],
                },
            }
        ],
    }
    open_page(page, live_server, nested)
    textarea = page.locator("#id_criteria")
    expect(textarea).to_be_visible()
    expect(page.locator(".rb-builder")).to_be_hidden()
    expect(page.locator(".rb-message")).to_have_text(NESTING)

    page.locator(".rb-toggle").click()
    expect(textarea).to_be_visible()
    expect(page.locator(".rb-message")).to_have_text(NESTING)
    expect(textarea).to_have_value(json.dumps(nested, indent=2))
    assert submit(page)["criteria"] == nested


def test_nesting_typed_in_advanced_mode_keeps_advanced_mode(page: Page, live_server):
    open_page(page, live_server, TWO_RULES)
    page.locator(".rb-toggle").click()
    nested = {"op": "and", "rules": [{"op": "or", "rules": TWO_RULES["rules"]}]}
    page.locator("#id_criteria").fill(json.dumps(nested))

    page.locator(".rb-toggle").click()

    expect(page.locator(".rb-message")).to_have_text(NESTING)
    expect(page.locator(".rb-builder")).to_be_hidden()
    expect(page.locator(".rb-row")).to_have_count(2)


def test_invalid_json_shows_a_message_and_keeps_the_text(page: Page, live_server):
    open_page(page, live_server)
    page.locator(".rb-toggle").click()
    textarea = page.locator("#id_criteria")
    broken = '{"op": "and", "rules": ['
    textarea.fill(broken)

    page.locator(".rb-toggle").click()

    expect(page.locator(".rb-message")).to_contain_text("Invalid JSON: ")
    expect(textarea).to_be_visible()
    expect(textarea).to_have_value(broken)

    textarea.fill(json.dumps(TWO_RULES))
    page.locator(".rb-toggle").click()
    expect(page.locator(".rb-message")).to_be_hidden()
    expect(page.locator(".rb-row")).to_have_count(2)


def test_the_form_works_without_javascript(browser, live_server):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        open_page(page, live_server)
        textarea = page.locator("#id_criteria")
        expect(textarea).to_be_visible()
        expect(page.locator(".rb-builder")).to_have_count(0)
        textarea.fill(json.dumps(TWO_RULES))

        assert submit(page)["criteria"] == TWO_RULES
    finally:
        context.close()
