"""Returns resolution as configuration (DESIGN §9, §10): the return policy's
review, cap, credit and dispute fields, and return configs' forward_on."""

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from feedback.models import BuyerPolicy
from sources.models import FeedbackConfig

RULES = {
    "op": "and",
    "rules": [
        {
            "lhv": "feedback.reason",
            "op": "is included in",
            "rhv": "Disconnected phone,Wrong number",
        }
    ],
}


def document(**return_policy):
    return {
        "buyers": [
            {
                "slug": "acme",
                "name": "Acme",
                "policy": {"return": {"enabled": True, **return_policy}},
                "flow_policies": [
                    {
                        "flow": "auto",
                        "kind": "return",
                        "enabled": True,
                        "review": "manual",
                        "cap": {"percent": 7.5, "min": 3},
                    }
                ],
            }
        ],
        "sources": [
            {
                "slug": "bluesky",
                "name": "Bluesky",
                "feedback": [
                    {
                        "kind": "return",
                        "enabled": True,
                        "forward_on": "approved",
                        "method": "json",
                        "url": "https://bluesky.example/api/returns",
                        "mappings": [{"target": "id", "value": "{{ event.id }}"}],
                    }
                ],
            }
        ],
    }


@pytest.fixture
def write(tmp_path):
    def write(doc):
        path = tmp_path / "config.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return write


def import_config(path, *args):
    out = StringIO()
    call_command("import_config", str(path), *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def export_config():
    out = StringIO()
    call_command("export_config", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_review_cap_credit_and_forward_on_import_and_export(write):
    import_config(
        write(
            document(
                review="rules",
                auto_approve=RULES,
                cap={"percent": 10, "min": 5},
                credit_percent=50,
                dispute_days=14,
            )
        )
    )

    wide = BuyerPolicy.objects.get(flow__isnull=True)
    assert (wide.review, wide.auto_approve, wide.cap_percent, wide.cap_min) == (
        "rules",
        RULES,
        Decimal(10),
        5,
    )
    assert (wide.credit_percent, wide.dispute_days) == (Decimal(50), 14)
    flow = BuyerPolicy.objects.get(flow__slug="auto")
    assert (flow.review, flow.cap_percent, flow.cap_min) == (
        "manual",
        Decimal("7.5"),
        3,
    )
    assert FeedbackConfig.objects.get().forward_on == "approved"

    exported = export_config()
    buyer = exported["buyers"][0]
    assert buyer["policy"]["return"] == {
        "enabled": True,
        "max_age_days": 90,
        "review": "rules",
        "auto_approve": RULES,
        "cap": {"percent": 10, "min": 5},
        "credit_percent": 50,
        "dispute_days": 14,
        "rules": None,
    }
    assert buyer["flow_policies"][0]["cap"] == {"percent": 7.5, "min": 3}
    assert exported["sources"][0]["feedback"][0]["forward_on"] == "approved"


@pytest.mark.django_db
def test_the_exported_document_imports_to_no_change(write):
    import_config(write(document(review="manual", cap={"percent": 10, "min": 0})))

    report = import_config(write(export_config()), "--check")

    assert "Buyers: 0 created, 0 updated, 1 unchanged." in report
    assert "Sources: 0 created, 0 updated, 1 unchanged." in report


@pytest.mark.django_db
def test_review_auto_is_the_default_and_behaves_as_before(write):
    doc = document()
    doc["buyers"][0]["flow_policies"] = []
    import_config(write(doc))

    policy = BuyerPolicy.objects.get()
    assert (policy.review, policy.cap_percent, policy.credit_percent) == (
        "auto",
        None,
        Decimal(100),
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"review": "rules"},
            '$.buyers[0].policy.return.auto_approve: review "rules" needs '
            "auto_approve rules",
        ),
        (
            {"review": "rules", "auto_approve": {"op": "and", "rules": [{"lhv": "x"}]}},
            "$.buyers[0].policy.return.auto_approve.rules[0]",
        ),
        ({"review": "sometimes"}, "$.buyers[0].policy.return.review"),
        ({"cap": {"percent": 150}}, "$.buyers[0].policy.return.cap.percent"),
        ({"cap": {"min": 3}}, "$.buyers[0].policy.return.cap"),
        (
            {"credit_percent": 33.333},
            "$.buyers[0].policy.return.credit_percent: at most two decimals",
        ),
        ({"dispute_days": -1}, "$.buyers[0].policy.return.dispute_days"),
    ],
)
def test_problems_name_their_json_path(write, change, expected):
    with pytest.raises(CommandError) as refused:
        import_config(write(document(**change)), "--check")

    assert expected in str(refused.value)
    assert not BuyerPolicy.objects.exists()


@pytest.mark.django_db
def test_review_fields_on_another_kind_and_forward_on_elsewhere_are_refused(write):
    doc = document()
    doc["buyers"][0]["flow_policies"].append(
        {"flow": "auto", "kind": "conversion", "enabled": True, "cap": None}
    )
    config = doc["sources"][0]["feedback"][0]
    config["kind"] = "conversion"

    with pytest.raises(CommandError) as refused:
        import_config(write(doc))

    message = str(refused.value)
    assert "$.buyers[0].flow_policies[1].cap: only applies to returns" in message
    assert "$.sources[0].feedback[0].forward_on: only applies to returns" in message
