"""RuleSetWidget renders the JSON textarea plus what criteria.js needs."""

import html
import json
import re

from django import forms

from sources.rules import OPERATORS, UNARY_OPERATORS
from sources.widgets import RuleSetWidget

RULE_SET = {
    "op": "and",
    "rules": [{"lhv": "lead.state", "op": "is equal to", "rhv": "TX"}],
}


class CriteriaForm(forms.Form):
    criteria = forms.JSONField(required=False, widget=RuleSetWidget)


def data_attribute(output: str, name: str) -> object:
    match = re.search(rf'data-{name}="([^"]*)"', output)
    assert match, f"no data-{name} in {output}"
    return json.loads(html.unescape(match.group(1)))


def test_render_wraps_the_textarea_in_a_builder_container():
    output = RuleSetWidget().render("criteria", RULE_SET, attrs={"id": "id_criteria"})

    assert output.startswith('<div class="rule-builder" data-rule-builder="criteria"')
    assert data_attribute(output, "operators") == list(OPERATORS)
    assert data_attribute(output, "unary") == sorted(UNARY_OPERATORS)
    variables = data_attribute(output, "variables")
    assert "lead.state" in variables
    assert "feedback.reason" in variables
    assert not [name for name in variables if "<" in name]
    textarea = re.search(r"<textarea[^>]*>(.*)</textarea>", output, re.DOTALL)
    assert textarea
    assert 'name="criteria"' in textarea.group(0)
    assert 'id="id_criteria"' in textarea.group(0)
    assert json.loads(html.unescape(textarea.group(1))) == RULE_SET


def test_render_escapes_values_in_the_textarea():
    rule_set = {
        "op": "and",
        "rules": [{"lhv": "lead.x", "op": "is equal to", "rhv": "</textarea><b>"}],
    }

    output = RuleSetWidget().render("criteria", rule_set)

    assert "</textarea><b>" not in output
    assert "&lt;/textarea&gt;&lt;b&gt;" in output


def test_render_accepts_custom_suggestions_and_operators():
    widget = RuleSetWidget(
        operators=["is equal to", "is blank"],
        unary_operators={"is blank"},
        variables=["lead.age"],
    )

    output = widget.render("rules", None)

    assert data_attribute(output, "operators") == ["is equal to", "is blank"]
    assert data_attribute(output, "unary") == ["is blank"]
    assert data_attribute(output, "variables") == ["lead.age"]


def test_media_is_the_local_script_and_stylesheet():
    media = RuleSetWidget().media

    assert media._js == ["sources/criteria.js"]
    assert media._css == {"all": ["sources/criteria.css"]}
    rendered = str(media)
    assert 'src="/static/sources/criteria.js"' in rendered
    assert 'href="/static/sources/criteria.css"' in rendered


def test_format_value_shows_nothing_for_no_rule_set():
    widget = RuleSetWidget()

    assert widget.format_value(None) == ""
    # A forms.JSONField prepares None as the JSON text "null".
    assert widget.format_value("null") == ""


def test_format_value_indents_a_rule_set():
    expected = json.dumps(RULE_SET, indent=2)

    assert RuleSetWidget().format_value(RULE_SET) == expected
    assert RuleSetWidget().format_value(json.dumps(RULE_SET)) == expected


def test_format_value_keeps_text_that_is_not_json():
    assert RuleSetWidget().format_value('{"op": "and",') == '{"op": "and",'


def test_format_value_keeps_non_ascii_readable():
    rule_set = {
        "op": "and",
        "rules": [{"lhv": "lead.city", "op": "is equal to", "rhv": "Zürich"}],
    }

    assert "Zürich" in RuleSetWidget().format_value(rule_set)


def test_a_form_shows_the_stored_rule_set_and_reads_it_back():
    unbound = CriteriaForm(initial={"criteria": RULE_SET})
    assert json.dumps(RULE_SET, indent=2) in html.unescape(str(unbound["criteria"]))

    posted = CriteriaForm(data={"criteria": json.dumps(RULE_SET, indent=2)})
    assert posted.is_valid(), posted.errors
    assert posted.cleaned_data["criteria"] == RULE_SET

    empty = CriteriaForm(data={"criteria": ""})
    assert empty.is_valid(), empty.errors
    assert empty.cleaned_data["criteria"] is None


def test_a_form_redisplays_invalid_json_as_typed():
    form = CriteriaForm(data={"criteria": '{"op": "and",'})

    assert not form.is_valid()
    assert '{"op": "and",' in html.unescape(str(form["criteria"]))
