"""Configuration as code (DESIGN §9): export_config and import_config."""

import copy
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from jsonschema import Draft202012Validator

from feedback import configuration
from feedback.configuration import (
    REDACTED,
    config_import,
    config_schema,
    redact_secrets,
    restore_secrets,
    secrets,
)
from feedback.models import Buyer, BuyerPolicy, Flow
from sources.models import FeedbackConfig, FieldMapping, Source
from tests.factories import (
    BuyerFactory,
    BuyerPolicyFactory,
    FlowFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db

# The example document of DESIGN §9, verbatim.
DESIGN_EXAMPLE = {
    "buyers": [
        {
            "slug": "acme-insurance",
            "name": "Acme Insurance",
            "policy": {
                "return": {"enabled": True, "max_age_days": 90, "rules": None},
                "conversion": {"enabled": True},
                "status": {"enabled": True},
            },
        }
    ],
    "sources": [
        {
            "slug": "bluesky-leads",
            "name": "Bluesky Leads",
            "accepts": {
                "return": {
                    "enabled": True,
                    "allowed_reasons": ["Wrong number", "Disconnected phone"],
                },
                "conversion": {"enabled": True, "allowed_reasons": []},
            },
            "feedback": [
                {
                    "kind": "return",
                    "enabled": True,
                    "method": "json",
                    "url": "https://bluesky.example/api/returns",
                    "http_method": "POST",
                    "sync": False,
                    "timeout_s": 10,
                    "headers": {"X-Partner": "leadback"},
                    "auth": {
                        "type": "basic",
                        "username": "partner",
                        "password": "<redacted>",
                    },
                    "signing": {"enabled": True, "secret": "<redacted>"},
                    "criteria": {
                        "op": "and",
                        "rules": [{"lhv": "feedback.reason", "op": "is not blank"}],
                    },
                    "mappings": [
                        {"target": "lead_id", "value": "{{ lead.id }}"},
                        {"target": "contact.email", "value": "{{ lead.email }}"},
                        {"target": "return_reason", "value": "{{ feedback.reason }}"},
                    ],
                    "response": {
                        "outcome_search_term": "accepted",
                        "outcome_search_path": "status",
                        "outcome_on_match": "success",
                        "reason_path": "message",
                        "default_reason": "",
                        "reference_path": "id",
                    },
                },
                {
                    "kind": "conversion",
                    "enabled": True,
                    "method": "soap",
                    "url": "https://bluesky.example/ws?wsdl",
                    "soap": {"operation": "RecordConversion", "version": "1.1"},
                    "mappings": [
                        {"target": "EventId", "value": "{{ event.id }}"},
                        {"target": "Amount", "value": "{{ feedback.revenue }}"},
                    ],
                    "response": {
                        "outcome_search_term": "ok",
                        "outcome_search_path": "Status",
                    },
                },
                {
                    "kind": "return",
                    "enabled": False,
                    "method": "batch",
                    "batch": {
                        "schedule": {
                            "every": "day",
                            "at": "06:00",
                            "timezone": "America/Chicago",
                        },
                        "transport": {
                            "type": "sftp",
                            "host": "sftp.bluesky.example",
                            "port": 22,
                            "username": "leadback",
                            "password": "<redacted>",
                            "host_key": "ssh-ed25519 AAAA...",
                            "directory": "/incoming",
                        },
                        "file_name": "returns-{{ period.start|date('%Y%m%d') }}.csv",
                        "header": True,
                        "send_empty": False,
                    },
                    "mappings": [
                        {"target": "event_id", "value": "{{ event.id }}"},
                        {"target": "reason", "value": "{{ feedback.reason }}"},
                    ],
                },
            ],
        }
    ],
}

# Keys deliberately out of order: the export sorts them, whatever the database.
STATE_IS_TX = {
    "rules": [{"rhv": "TX", "op": "is equal to", "lhv": "lead.state"}],
    "op": "and",
}


# A real key where the DESIGN example has a placeholder: imports check host keys.
HOST_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWSmbP5QZFB6gjM5i6d5KJ5Hk0hW5qE2zYq3y6x1g8T"
)
SECRETS = {"password": "partner-pw", "signing": "whsec_c2VjcmV0LXNpZ25pbmcta2V5"}


def example() -> dict:
    """The DESIGN example with its secrets given, as a first import needs them."""
    document = copy.deepcopy(DESIGN_EXAMPLE)
    configs = document["sources"][0]["feedback"]
    configs[0]["auth"]["password"] = SECRETS["password"]
    configs[0]["signing"]["secret"] = SECRETS["signing"]
    configs[2]["batch"]["transport"]["password"] = "sftp-pw"
    configs[2]["batch"]["transport"]["host_key"] = HOST_KEY
    return document


@pytest.fixture
def write(tmp_path):
    def write(document, name="config.json"):
        path = tmp_path / name
        text = document if isinstance(document, str) else json.dumps(document)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def run_import(path, *args):
    out, err = StringIO(), StringIO()
    call_command("import_config", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_error(path, *args) -> str:
    with pytest.raises(CommandError) as excinfo:
        run_import(path, *args)
    return str(excinfo.value)


def run_export(*args) -> str:
    out = StringIO()
    call_command("export_config", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Buyer, BuyerPolicy, Flow, Source, FeedbackConfig, FieldMapping)
    }


def policy_rows(buyer) -> dict:
    return {
        (row.flow.slug if row.flow else None, row.kind): (
            row.enabled,
            row.max_age_days,
            row.rules,
        )
        for row in buyer.policies.select_related("flow")
    }


@pytest.fixture
def populated(db):
    """Buyers with buyer-wide and per-flow policies, sources with reasons,
    created out of slug order."""
    home = FlowFactory(slug="home-insurance")
    auto = FlowFactory(slug="auto-insurance")
    BuyerFactory(slug="zenith-direct", name="Zenith Direct", is_active=False)
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    BuyerPolicyFactory(buyer=acme, kind="return", max_age_days=30, rules=STATE_IS_TX)
    BuyerPolicyFactory(buyer=acme, kind="conversion", enabled=False)
    BuyerPolicyFactory(buyer=acme, kind="status")
    BuyerPolicyFactory(buyer=acme, flow=home, kind="return", enabled=False)
    BuyerPolicyFactory(buyer=acme, flow=auto, kind="conversion")
    BuyerPolicyFactory(buyer=acme, flow=auto, kind="return", max_age_days=14)
    SourceFactory(slug="zeta-leads", name="Zeta Leads", accepts_status=False)
    SourceFactory(
        slug="bluesky-leads",
        name="Bluesky Leads",
        return_reasons=["Wrong number", "Disconnected phone"],
        accepts_conversion=False,
    )
    SourceFactory(slug="alpha-leads", name="Alpha", status_reasons=["Contacted"])


# The DESIGN example -----------------------------------------------------------


def test_design_example_imports_and_warns_about_feedback_configs(write):
    out, err = run_import(write(example()))

    buyer = Buyer.objects.get(slug="acme-insurance")
    assert buyer.name == "Acme Insurance"
    assert buyer.is_active
    assert policy_rows(buyer) == {
        (None, "return"): (True, 90, None),
        (None, "conversion"): (True, 90, None),
        (None, "status"): (True, 90, None),
    }
    source = Source.objects.get(slug="bluesky-leads")
    assert source.name == "Bluesky Leads"
    assert source.accepts("return")
    assert source.allowed_reasons("return") == ["Wrong number", "Disconnected phone"]
    assert source.accepts("conversion")
    assert source.allowed_reasons("conversion") == []
    # Absent from the document: the model's defaults.
    assert source.accepts("status")
    assert source.allowed_reasons("status") == []
    assert "buyer acme-insurance: created" in out
    assert "source bluesky-leads: created" in out
    assert "Buyers: 1 created, 0 updated, 0 unchanged." in out
    assert err == ""
    returns, conversions = (
        list(source.feedback_configs.filter(kind=kind))
        for kind in ("return", "conversion")
    )
    assert len(returns) == 2
    assert len(conversions) == 1
    json_config, batch_config = returns
    assert (json_config.method, json_config.url, json_config.http_method) == (
        "json",
        "https://bluesky.example/api/returns",
        "POST",
    )
    assert (json_config.auth_type, json_config.auth_username) == ("basic", "partner")
    assert json_config.auth_secret == SECRETS["password"]
    assert json_config.signing_enabled
    assert json_config.signing_secret == SECRETS["signing"]
    assert json_config.headers == {"X-Partner": "leadback"}
    assert json_config.criteria == {
        "op": "and",
        "rules": [{"lhv": "feedback.reason", "op": "is not blank"}],
    }
    assert [(m.target, m.value) for m in json_config.mappings.all()] == [
        ("lead_id", "{{ lead.id }}"),
        ("contact.email", "{{ lead.email }}"),
        ("return_reason", "{{ feedback.reason }}"),
    ]
    assert (json_config.outcome_search_term, json_config.reference_path) == (
        "accepted",
        "id",
    )
    soap_config = conversions[0]
    assert (soap_config.method, soap_config.soap_operation) == (
        "soap",
        "RecordConversion",
    )
    assert soap_config.soap_version == "1.1"
    assert soap_config.outcome_search_path == "Status"
    assert (batch_config.method, batch_config.enabled) == ("batch", False)
    assert (
        batch_config.batch_every,
        str(batch_config.batch_at),
        batch_config.batch_day,
        batch_config.batch_timezone,
    ) == ("day", "06:00:00", None, "America/Chicago")
    assert (
        batch_config.batch_transport,
        batch_config.batch_host,
        batch_config.batch_port,
        batch_config.batch_username,
        batch_config.batch_password,
        batch_config.batch_host_key,
        batch_config.batch_directory,
    ) == (
        "sftp",
        "sftp.bluesky.example",
        22,
        "leadback",
        "sftp-pw",
        HOST_KEY,
        "/incoming",
    )
    assert batch_config.batch_file_name == (
        "returns-{{ period.start|date('%Y%m%d') }}.csv"
    )
    assert (batch_config.batch_header, batch_config.batch_send_empty) == (True, False)
    assert [(m.target, m.value) for m in batch_config.mappings.all()] == [
        ("event_id", "{{ event.id }}"),
        ("reason", "{{ feedback.reason }}"),
    ]


def test_feedback_configs_are_validated_even_though_not_imported(write):
    document = example()
    document["sources"][0]["feedback"][0]["method"] = "carrier-pigeon"

    message = import_error(write(document))

    assert "$.sources[0].feedback[0].method: must be one of" in message
    assert row_counts() == dict.fromkeys(row_counts(), 0)


def test_check_writes_nothing(write):
    path = write(example())

    out, err = run_import(path, "--check")

    assert row_counts() == dict.fromkeys(row_counts(), 0)
    assert "buyer acme-insurance: created" in out
    assert "source bluesky-leads: created" in out
    assert "Check only: nothing was written." in out
    assert err == ""


def test_check_reports_updates_and_unchanged_without_writing(populated, write):
    document = json.loads(run_export())
    document["buyers"][0]["name"] = "Acme Insurance Group"
    document["buyers"][0]["flow_policies"].append(
        {"flow": "life-insurance", "kind": "status", "enabled": False}
    )
    before = row_counts()

    out, _ = run_import(write(document), "--check")

    assert row_counts() == before
    assert Buyer.objects.get(slug="acme-insurance").name == "Acme Insurance"
    assert not Flow.objects.filter(slug="life-insurance").exists()
    assert "buyer acme-insurance: updated (name, flow_policies)" in out
    assert "buyer zenith-direct: unchanged" in out
    assert "source bluesky-leads: unchanged" in out
    assert "Flows to create: life-insurance." in out


# Refusing invalid documents ---------------------------------------------------


def _set(document: dict, path: tuple, key: str, value) -> None:
    node = document
    for part in path:
        node = node[part]
    node[key] = value


@pytest.mark.parametrize(
    ("parent", "key"),
    [
        ((), "version"),
        (("buyers", 0), "colour"),
        (("buyers", 0, "policy"), "refund"),
        (("buyers", 0, "policy", "return"), "max_days"),
        (("sources", 0), "reasons"),
        (("sources", 0, "accepts", "return"), "reasons"),
        (("sources", 0, "feedback", 0, "auth"), "pasword"),
        (("sources", 0, "feedback", 0, "criteria", "rules", 0), "value"),
        (("sources", 0, "feedback", 1, "mappings", 1), "default"),
        (("sources", 0, "feedback", 1, "soap"), "wsdl"),
        (("sources", 0, "feedback", 2, "batch", "transport"), "passwd"),
    ],
)
def test_unknown_key_is_refused_with_its_path(write, parent, key):
    document = example()
    _set(document, parent, key, "x")
    expected = configuration.json_path((*parent, key))

    message = import_error(write(document))

    assert f"{expected}: unknown key" in message
    assert "nothing was written" in message
    assert row_counts() == dict.fromkeys(row_counts(), 0)


def test_nothing_is_written_when_a_later_item_is_invalid(write):
    BuyerFactory(slug="acme-insurance", name="Old name")
    document = example()
    document["sources"].append(
        {
            "slug": "zeta-leads",
            "name": "Zeta Leads",
            "accepts": {"return": {"enabled": True, "allowed_reasons": [7]}},
        }
    )

    message = import_error(write(document))

    assert "$.sources[1].accepts.return.allowed_reasons[0]: must be a string" in message
    assert Buyer.objects.get(slug="acme-insurance").name == "Old name"
    assert row_counts() == {**dict.fromkeys(row_counts(), 0), "Buyer": 1}


def test_rule_sets_are_checked_by_the_rules_engine(write):
    document = example()
    document["buyers"][0]["policy"]["return"]["rules"] = {
        "rules": [
            {"lhv": "lead.phone_1", "op": "matches pattern", "rhv": "(unclosed"},
            {"lhv": "lead.age", "op": "is between", "rhv": "old-older"},
        ]
    }

    message = import_error(write(document))

    assert "$.buyers[0].policy.return.rules.rules[0].rhv: invalid pattern" in message
    assert "$.buyers[0].policy.return.rules.rules[1].rhv: invalid range" in message


def test_every_problem_is_listed(write):
    document = example()
    del document["buyers"][0]["name"]
    document["buyers"][0]["policy"]["return"]["enabled"] = "yes"
    document["sources"][0]["feedback"][2]["batch"]["schedule"]["timezone"] = "Mars/X"

    message = import_error(write(document))

    assert "3 problems" in message
    assert "$.buyers[0].name: is required" in message
    assert "$.buyers[0].policy.return.enabled: must be a boolean, not a string" in (
        message
    )
    assert "$.sources[0].feedback[2].batch.schedule.timezone: 'Mars/X' is not a" in (
        message
    )


def test_invalid_json_gives_line_and_column(write):
    path = write('{\n  "buyers": [\n    {"slug": "a",}\n  ]\n}')

    message = import_error(path)

    assert "not valid JSON" in message
    assert "line 3 column 18" in message


def test_duplicate_key_in_one_object_is_refused(write):
    message = import_error(write('{"buyers": [], "buyers": []}'))

    assert "duplicate key 'buyers'" in message


def test_nan_is_not_json(write):
    message = import_error(write('{"buyers": [], "sources": NaN}'))

    assert "not valid JSON: NaN is not a JSON value" in message


def test_absurd_nesting_is_refused_not_a_crash(write):
    rule_set = {"rules": []}
    for _ in range(300):
        rule_set = {"rules": [{"lhv": "a", "op": "is blank", "rule_set": rule_set}]}
    document = example()
    document["buyers"][0]["policy"]["return"]["rules"] = rule_set

    message = import_error(write(json.dumps(document)))

    assert "$.buyers[0].policy.return.rules.rules[0].rule_set" in message
    assert "nested more than 64 levels deep" in message


def test_a_document_that_is_not_an_object_is_refused(write):
    message = import_error(write("[]"))

    assert "$: must be an object, not an array" in message


def test_unreadable_file_is_a_command_error(tmp_path):
    message = import_error(tmp_path / "missing.json")

    assert "Cannot read" in message


@pytest.mark.parametrize("section", ["buyers", "sources"])
def test_duplicate_slugs_are_refused_with_path(write, section):
    document = example()
    document[section].append(copy.deepcopy(document[section][0]))

    message = import_error(write(document))

    slug = document[section][0]["slug"]
    assert f"${'.' + section}[1].slug: duplicate slug {slug!r}" in message
    assert f"(first used at $.{section}[0].slug)" in message
    assert row_counts() == dict.fromkeys(row_counts(), 0)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: _set(d, ("buyers", 0, "policy", "return"), "max_age_days", 0),
            "$.buyers[0].policy.return.max_age_days: must be at least 1",
        ),
        (
            lambda d: _set(d, ("buyers", 0, "policy", "return"), "max_age_days", 3651),
            "$.buyers[0].policy.return.max_age_days: must be at most 3650",
        ),
        (
            lambda d: _set(d, ("buyers", 0), "slug", "Acme Insurance"),
            "$.buyers[0].slug: must contain only letters, digits, hyphens",
        ),
        (
            lambda d: _set(d, ("sources", 0), "slug", "bluesky/leads"),
            "$.sources[0].slug: must contain only letters, digits, hyphens",
        ),
        (
            lambda d: _set(
                d,
                ("sources", 0, "accepts", "return"),
                "allowed_reasons",
                ["Wrong number", "wrong NUMBER "],
            ),
            "$.sources[0].accepts.return.allowed_reasons: The reason 'wrong NUMBER ' "
            "is listed twice.",
        ),
        (
            lambda d: _set(
                d, ("sources", 0, "accepts", "return"), "allowed_reasons", ["  "]
            ),
            "$.sources[0].accepts.return.allowed_reasons: Each reason must be "
            "non-blank text, not '  '.",
        ),
        (
            lambda d: _set(
                d,
                ("buyers", 0),
                "flow_policies",
                [
                    {"flow": "auto", "kind": "return", "enabled": True},
                    {"flow": "auto", "kind": "return", "enabled": False},
                ],
            ),
            "$.buyers[0].flow_policies[1]: a second return policy for flow 'auto'",
        ),
        (
            lambda d: _set(
                d,
                ("buyers", 0),
                "flow_policies",
                [
                    {
                        "flow": "auto",
                        "kind": "conversion",
                        "enabled": True,
                        "max_age_days": 5,
                    }
                ],
            ),
            "$.buyers[0].flow_policies[0].max_age_days: only applies to returns",
        ),
        (
            lambda d: _set(
                d,
                ("buyers", 0, "policy", "return"),
                "rules",
                {"op": "and", "rules": [{"lhv": "lead.state", "op": "is equal to"}]},
            ),
            "$.buyers[0].policy.return.rules.rules[0].rhv: required with the "
            'operator "is equal to"',
        ),
        (
            lambda d: _set(
                d,
                ("buyers", 0, "policy", "return"),
                "rules",
                {"op": "xor", "rules": []},
            ),
            '$.buyers[0].policy.return.rules.op: must be one of "and", "or"',
        ),
    ],
)
def test_semantic_and_value_checks_name_the_path(write, change, expected):
    document = example()
    change(document)

    message = import_error(write(document))

    assert expected in message
    assert row_counts() == dict.fromkeys(row_counts(), 0)


@pytest.mark.parametrize(
    ("index", "change", "expected"),
    [
        (
            1,
            lambda c: c.pop("soap"),
            "$.sources[0].feedback[1].soap: is required with method 'soap'",
        ),
        (
            0,
            lambda c: c["auth"].update(type="wsse"),
            "$.sources[0].feedback[0].auth.type: WS-Security is only for SOAP configs.",
        ),
        (
            0,
            lambda c: c.pop("url"),
            "$.sources[0].feedback[0].url: is required with method 'json'",
        ),
        (
            0,
            lambda c: c.update(url="file:///etc/passwd"),
            "$.sources[0].feedback[0].url: Use an http:// or https:// URL.",
        ),
        (
            0,
            lambda c: c["headers"].update({"X-Injected": "a\r\nHost: evil"}),
            "$.sources[0].feedback[0].headers: Header X-Injected: line breaks and "
            "control characters.",
        ),
        (
            2,
            lambda c: c["batch"]["schedule"].update(every="week"),
            "$.sources[0].feedback[2].batch.schedule.day: A weekly file needs the day",
        ),
        (
            2,
            lambda c: c["batch"]["transport"].pop("host_key"),
            "$.sources[0].feedback[2].batch.transport.host_key: is required",
        ),
        (
            2,
            lambda c: c["batch"].update(
                transport={"type": "email", "to": ["ops@"], "subject": "Returns"}
            ),
            "$.sources[0].feedback[2].batch.transport.to: 'ops@' is not an email "
            "address.",
        ),
    ],
)
def test_feedback_config_checks_name_the_path(write, index, change, expected):
    document = example()
    change(document["sources"][0]["feedback"][index])

    message = import_error(write(document))

    assert expected in message


# Export and round trips -------------------------------------------------------


# A return policy's review fields as exported when left at their defaults.
REVIEW_DEFAULTS = {
    "review": "auto",
    "auto_approve": None,
    "cap": None,
    "credit_percent": 100,
    "dispute_days": 7,
}


def test_export_is_ordered_by_slug_and_pins_the_format(populated):
    document = json.loads(run_export())

    assert [b["slug"] for b in document["buyers"]] == [
        "acme-insurance",
        "zenith-direct",
    ]
    assert [s["slug"] for s in document["sources"]] == [
        "alpha-leads",
        "bluesky-leads",
        "zeta-leads",
    ]
    assert document["buyers"][0] == {
        "slug": "acme-insurance",
        "name": "Acme Insurance",
        "is_active": True,
        "policy": {
            "return": {
                "enabled": True,
                "max_age_days": 30,
                **REVIEW_DEFAULTS,
                "rules": {
                    "op": "and",
                    "rules": [{"lhv": "lead.state", "op": "is equal to", "rhv": "TX"}],
                },
            },
            "conversion": {"enabled": False, "rules": None},
            "status": {"enabled": True, "rules": None},
        },
        "flow_policies": [
            {
                "flow": "auto-insurance",
                "kind": "return",
                "enabled": True,
                "max_age_days": 14,
                **REVIEW_DEFAULTS,
                "rules": None,
            },
            {
                "flow": "auto-insurance",
                "kind": "conversion",
                "enabled": True,
                "rules": None,
            },
            {
                "flow": "home-insurance",
                "kind": "return",
                "enabled": False,
                "max_age_days": 90,
                **REVIEW_DEFAULTS,
                "rules": None,
            },
        ],
    }
    assert document["buyers"][1]["is_active"] is False
    assert document["buyers"][1]["policy"] == {}
    assert document["sources"][1] == {
        "slug": "bluesky-leads",
        "name": "Bluesky Leads",
        "accepts": {
            "return": {
                "enabled": True,
                "allowed_reasons": ["Wrong number", "Disconnected phone"],
            },
            "conversion": {"enabled": False, "allowed_reasons": []},
            "status": {"enabled": True, "allowed_reasons": []},
        },
        "feedback": [],
    }


def test_export_is_pretty_printed_and_output_file_matches_stdout(populated, tmp_path):
    target = tmp_path / "leadback.json"
    call_command(
        "export_config", "--output", str(target), stdout=StringIO(), stderr=StringIO()
    )

    text = run_export()
    assert target.read_text(encoding="utf-8") == text
    assert text.startswith('{\n  "buyers": [\n')
    assert text.endswith("}\n")


def test_export_of_an_empty_database():
    assert json.loads(run_export()) == {"buyers": [], "sources": []}


def test_round_trip_on_the_same_database_is_unchanged(populated, write):
    out, err = run_import(write(run_export()), "--check")

    assert "Buyers: 0 created, 0 updated, 2 unchanged." in out
    assert "Sources: 0 created, 0 updated, 3 unchanged." in out
    assert "updated" not in out.replace("0 updated", "")
    assert err == ""


def test_round_trip_into_an_empty_database_gives_the_same_document(populated, write):
    first = run_export()
    BuyerPolicy.objects.all().delete()
    Buyer.objects.all().delete()
    Flow.objects.all().delete()
    Source.objects.all().delete()

    out, _ = run_import(write(first))

    assert "Buyers: 2 created" in out
    assert "Flows created: auto-insurance, home-insurance." in out
    assert run_export() == first


def test_importing_twice_changes_nothing_the_second_time(write):
    path = write(example())
    run_import(path)
    before = policy_rows(Buyer.objects.get())

    out, _ = run_import(path)

    assert "buyer acme-insurance: unchanged" in out
    assert "source bluesky-leads: unchanged" in out
    assert policy_rows(Buyer.objects.get()) == before


# Updating by slug -------------------------------------------------------------


def test_updates_an_existing_buyers_name_and_policy_by_slug(write):
    auto = FlowFactory(slug="auto-insurance")
    buyer = BuyerFactory(slug="acme-insurance", name="Acme (old)")
    kept = BuyerPolicyFactory(buyer=buyer, kind="return", max_age_days=30)
    BuyerPolicyFactory(buyer=buyer, kind="status", enabled=False)
    BuyerPolicyFactory(buyer=buyer, flow=auto, kind="return")
    document = {
        "buyers": [
            {
                "slug": "acme-insurance",
                "name": "Acme Insurance",
                "policy": {
                    "return": {
                        "enabled": True,
                        "max_age_days": 45,
                        "rules": STATE_IS_TX,
                    },
                    "conversion": {"enabled": False},
                },
            }
        ]
    }

    out, _ = run_import(write(document))

    buyer.refresh_from_db()
    assert buyer.name == "Acme Insurance"
    # Exactly what the document says: the status and per-flow rows are gone.
    assert policy_rows(buyer) == {
        (None, "return"): (True, 45, STATE_IS_TX),
        (None, "conversion"): (False, 90, None),
    }
    assert BuyerPolicy.objects.get(buyer=buyer, kind="return").pk == kept.pk
    assert Buyer.objects.count() == 1
    assert "buyer acme-insurance: updated (name, policy, flow_policies)" in out


def test_updates_a_source_and_leaves_unmentioned_rows_alone(write):
    SourceFactory(slug="bluesky-leads", name="Bluesky", accepts_return=False)
    other = SourceFactory(slug="other-leads", name="Other")
    document = {
        "sources": [
            {
                "slug": "bluesky-leads",
                "name": "Bluesky Leads",
                "accepts": {
                    "return": {"enabled": True, "allowed_reasons": ["Wrong number"]},
                    "status": {"enabled": False},
                },
            }
        ]
    }

    out, _ = run_import(write(document))

    source = Source.objects.get(slug="bluesky-leads")
    assert source.name == "Bluesky Leads"
    assert source.accepts("return")
    assert source.allowed_reasons("return") == ["Wrong number"]
    assert not source.accepts("status")
    assert source.accepts("conversion")
    assert Source.objects.get(pk=other.pk).name == "Other"
    assert "source bluesky-leads: updated (name, accepts)" in out


def test_flow_policies_create_unknown_flows(write):
    document = example()
    document["buyers"][0]["flow_policies"] = [
        {"flow": "auto-insurance", "kind": "return", "enabled": True, "max_age_days": 7}
    ]

    run_import(write(document))

    flow = Flow.objects.get(slug="auto-insurance")
    row = BuyerPolicy.objects.get(flow=flow)
    assert (row.buyer.slug, row.kind, row.enabled, row.max_age_days) == (
        "acme-insurance",
        "return",
        True,
        7,
    )


# Secrets ----------------------------------------------------------------------


def test_feedback_secrets_are_redacted_and_restored():
    stored = example()
    config = stored["sources"][0]["feedback"][0]
    config["auth"]["password"] = "hunter2"
    config["signing"]["secret"] = "whsec_abc"
    stored["sources"][0]["feedback"][2]["batch"]["transport"]["password"] = "sftp-pw"

    redacted = redact_secrets(stored)

    feedback = redacted["sources"][0]["feedback"]
    assert feedback[0]["auth"] == {
        "type": "basic",
        "username": "partner",
        "password": REDACTED,
    }
    assert feedback[0]["signing"]["secret"] == REDACTED
    assert feedback[0]["headers"] == {"X-Partner": "leadback"}
    assert feedback[2]["batch"]["transport"]["password"] == REDACTED
    assert stored["sources"][0]["feedback"][0]["auth"]["password"] == "hunter2"

    assert restore_secrets(redacted, stored=stored) == []
    assert redacted == stored


def test_a_redacted_secret_with_nothing_stored_is_a_problem():
    problems = restore_secrets(
        copy.deepcopy(DESIGN_EXAMPLE), stored={"buyers": [], "sources": []}
    )

    assert [str(p).split(":")[0] for p in problems] == [
        "$.sources[0].feedback[0].auth.password",
        "$.sources[0].feedback[0].signing.secret",
        "$.sources[0].feedback[2].batch.transport.password",
    ]


@pytest.fixture
def buyer_names_are_secret(monkeypatch):
    """Pretend buyer names are secrets: none of the stored fields is one yet, and
    this drives the export and import mechanism end to end."""
    monkeypatch.setattr(secrets, "SECRET_PATHS", (("buyers", "*", "name"),))


def test_export_redacts_secrets_unless_asked(populated, buyer_names_are_secret):
    redacted = json.loads(run_export())
    revealed = json.loads(run_export("--include-secrets"))

    assert {b["name"] for b in redacted["buyers"]} == {REDACTED}
    assert [b["name"] for b in revealed["buyers"]] == [
        "Acme Insurance",
        "Zenith Direct",
    ]


def test_importing_redacted_keeps_the_stored_secret(
    populated, buyer_names_are_secret, write
):
    document = json.loads(run_export())
    document["buyers"][1]["is_active"] = True

    out, _ = run_import(write(document))

    assert "buyer acme-insurance: unchanged" in out
    assert "buyer zenith-direct: updated (is_active)" in out
    assert Buyer.objects.get(slug="zenith-direct").name == "Zenith Direct"


def test_importing_redacted_without_a_stored_secret_is_refused(
    buyer_names_are_secret, write
):
    document = {"buyers": [{"slug": "new-buyer", "name": REDACTED}]}

    message = import_error(write(document))

    assert "$.buyers[0].name: is '<redacted>' but there is no stored secret" in message
    assert not Buyer.objects.exists()


# The service and the schema ---------------------------------------------------


def test_config_import_reports_without_the_command():
    report = config_import(document=example(), dry_run=True)

    assert [str(change) for change in report.changes] == [
        "buyer acme-insurance: created",
        "source bluesky-leads: created",
    ]
    assert report.dry_run
    assert report.warnings == []
    assert not Buyer.objects.exists()


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(config_schema())


# Feedback configs ---------------------------------------------------------------


def exported_configs() -> list[dict]:
    return json.loads(run_export("--include-secrets"))["sources"][0]["feedback"]


def test_feedback_configs_round_trip_with_defaults_filled_in(write):
    run_import(write(example()))

    configs = exported_configs()

    assert [c["kind"] for c in configs] == ["return", "return", "conversion"]
    # Return configs forward on acceptance unless they say otherwise.
    accepted = {"forward_on": "accepted"}
    assert configs[0] == example()["sources"][0]["feedback"][0] | accepted
    # The batch config exactly as given: the example spells out every key.
    assert configs[1] == example()["sources"][0]["feedback"][2] | {
        "criteria": None,
        **accepted,
    }
    assert configs[2] == {
        "kind": "conversion",
        "enabled": True,
        "method": "soap",
        "url": "https://bluesky.example/ws?wsdl",
        "sync": False,
        "timeout_s": 10,
        "headers": {},
        "auth": {"type": "none"},
        "signing": {"enabled": False},
        "criteria": None,
        "mappings": [
            {"target": "EventId", "value": "{{ event.id }}"},
            {"target": "Amount", "value": "{{ feedback.revenue }}"},
        ],
        "response": {
            "outcome_search_term": "ok",
            "outcome_search_path": "Status",
            "outcome_on_match": "success",
            "reason_path": "",
            "default_reason": "",
            "reference_path": "",
        },
        "soap": {"operation": "RecordConversion", "version": "1.1"},
    }


def test_exported_configs_are_redacted_and_reimport_keeps_the_secrets(write):
    run_import(write(example()))
    ids = list(FeedbackConfig.objects.order_by("pk").values_list("pk", flat=True))

    exported = json.loads(run_export())
    config = exported["sources"][0]["feedback"][0]
    assert config["auth"]["password"] == REDACTED
    assert config["signing"]["secret"] == REDACTED
    out, _ = run_import(write(exported, "exported.json"))

    assert "source bluesky-leads: unchanged" in out
    stored = FeedbackConfig.objects.get(kind="return", method="json")
    assert stored.auth_secret == SECRETS["password"]
    batch = FeedbackConfig.objects.get(method="batch")
    assert exported["sources"][0]["feedback"][1]["batch"]["transport"]["password"] == (
        REDACTED
    )
    assert batch.batch_password == "sftp-pw"
    assert stored.signing_secret == SECRETS["signing"]
    assert (
        list(FeedbackConfig.objects.order_by("pk").values_list("pk", flat=True)) == ids
    )


def test_a_changed_config_updates_in_place_and_dropped_ones_are_removed(write):
    run_import(write(example()))
    kept = FeedbackConfig.objects.get(kind="return", method="json")
    document = json.loads(run_export())
    configs = document["sources"][0]["feedback"]
    configs[0]["mappings"].append({"target": "note", "value": "{{ feedback.note }}"})
    configs[0]["auth"]["password"] = "rotated-pw"
    del configs[1:]  # the batch return and the conversion

    out, _ = run_import(write(document, "changed.json"))

    assert "source bluesky-leads: updated (feedback)" in out
    kept.refresh_from_db()
    assert kept.auth_secret == "rotated-pw"
    assert [m.target for m in kept.mappings.all()] == [
        "lead_id",
        "contact.email",
        "return_reason",
        "note",
    ]
    assert list(FeedbackConfig.objects.values_list("kind", flat=True)) == ["return"]


def test_the_order_of_kinds_in_the_file_is_not_a_change(write):
    run_import(write(example()))
    document = json.loads(run_export())
    # Conversions first; within a kind the order is the config's identity.
    document["sources"][0]["feedback"].sort(key=lambda c: c["kind"] != "conversion")

    out, _ = run_import(write(document, "reversed.json"))

    assert "source bluesky-leads: unchanged" in out


def test_the_verbatim_design_example_needs_its_secrets_on_a_fresh_install(write):
    document = copy.deepcopy(DESIGN_EXAMPLE)
    document["sources"][0]["feedback"][2]["batch"]["transport"]["host_key"] = HOST_KEY
    message = import_error(write(document))

    assert "$.sources[0].feedback[0].auth.password: is '<redacted>'" in message
    assert row_counts() == dict.fromkeys(row_counts(), 0)


def test_import_checks_configs_as_the_admin_does(write):
    document = example()
    config = document["sources"][0]["feedback"][0]
    config["mappings"][0]["value"] = "{{ lead.id "
    config["headers"] = {"Host": "evil.example"}
    config["signing"]["secret"] = "not-a-whsec-secret"
    config["response"]["outcome_search_path"] = "//*["
    config["auth"]["username"] = "u" * 201

    message = import_error(write(document))

    assert (
        "$.sources[0].feedback[0].mappings[0].value: This template does not work: "
        in message
    )
    assert "$.sources[0].feedback[0].headers: " in message
    assert "$.sources[0].feedback[0].signing.secret: " in message
    assert "$.sources[0].feedback[0].response.outcome_search_path: " in message
    assert "$.sources[0].feedback[0].auth.username: " in message
    assert row_counts() == dict.fromkeys(row_counts(), 0)
