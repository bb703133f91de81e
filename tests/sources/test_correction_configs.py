"""A feedback config's retraction and amendment requests (DESIGN §12): checked
in the admin form and on import, exported and imported as config-as-code."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from feedback.models import BuyerPolicy
from sources.models import FeedbackConfig
from sources.services import correction_problems, feedback_config_correction
from tests.factories import SourceFactory
from tests.sources.test_config_admin import MAPPINGS, config_form

pytestmark = pytest.mark.django_db

ADD = reverse("admin:sources_feedbackconfig_add")
ON_RETRACT = {
    "method": "json",
    "url": "https://returns.example/retractions",
    "mappings": [
        {"target": "original_id", "value": "{{ notification.original_id }}"},
        {"target": "reason", "value": "{{ correction.reason }}"},
    ],
}


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_an_admin_saves_a_retraction_request(staff_client):
    source = SourceFactory()

    response = staff_client.post(
        ADD,
        config_form(source, mappings=MAPPINGS, on_retract=json.dumps(ON_RETRACT)),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    config = FeedbackConfig.objects.get()
    assert config.on_retract == ON_RETRACT
    assert config.on_amend is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({**ON_RETRACT, "method": "batch"}, "method must be one of"),
        ({**ON_RETRACT, "url": "ftp://x"}, "url must be an http:// or https:// URL."),
        ({**ON_RETRACT, "mappings": []}, "mappings must list at least one"),
        ({**ON_RETRACT, "method": "soap"}, "A SOAP request needs soap_operation"),
        ({**ON_RETRACT, "verb": "POST"}, "Unknown key"),
        (
            {**ON_RETRACT, "mappings": [{"target": "x", "value": "{{ lead.id "}]},
            "Mapping ",
        ),
        (["not", "an", "object"], "Enter an object such as"),
    ],
)
def test_the_form_names_what_is_wrong_with_a_correction_request(
    staff_client, value, message
):
    source = SourceFactory()

    response = staff_client.post(
        ADD, config_form(source, mappings=MAPPINGS, on_amend=json.dumps(value))
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not FeedbackConfig.objects.exists()


def test_the_correction_request_keeps_the_configs_auth_and_reading():
    config = FeedbackConfig(
        method="xml",
        url="https://returns.example/xml",
        auth_type="bearer",
        auth_secret="tok",
        outcome_search_term="ok",
        on_retract={**ON_RETRACT, "http_method": "PUT"},
    )

    derived, mappings = feedback_config_correction(config=config, action="retract")

    assert (derived.method, derived.url, derived.http_method) == (
        "json",
        "https://returns.example/retractions",
        "PUT",
    )
    assert (derived.auth_type, derived.auth_secret) == ("bearer", "tok")
    assert derived.outcome_search_term == "ok"
    assert [(m.target, m.value) for m in mappings] == [
        ("original_id", "{{ notification.original_id }}"),
        ("reason", "{{ correction.reason }}"),
    ]
    assert config.method == "xml"  # the stored config is untouched
    assert feedback_config_correction(config=config, action="amend") is None
    assert correction_problems(config, "on_retract") == []


ON_ERASE = {
    "url": "https://bluesky.example/api/erasures",
    "method": "json",
    "mappings": {"lead_id": "{{ lead.id }}", "erasure": "{{ erasure.id }}"},
}


def test_correction_requests_round_trip_through_config_as_code(tmp_path):
    document = {
        "sources": [
            {
                "slug": "bluesky",
                "name": "Bluesky",
                "feedback": [
                    {
                        "kind": "conversion",
                        "method": "json",
                        "url": "https://bluesky.example/api/sales",
                        "mappings": [{"target": "id", "value": "{{ event.id }}"}],
                        "on_retract": ON_RETRACT,
                        "on_amend": {
                            "method": "soap",
                            "url": "https://bluesky.example/amend?wsdl",
                            "soap_operation": "AmendSale",
                            "mappings": [
                                {"target": "amount", "value": "{{ feedback.revenue }}"}
                            ],
                        },
                        "on_erase": ON_ERASE,
                    },
                    {
                        "kind": "return",
                        "method": "json",
                        "url": "https://bluesky.example/api/returns",
                        "mappings": [{"target": "id", "value": "{{ event.id }}"}],
                    },
                ],
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())

    conversion = FeedbackConfig.objects.get(kind="conversion")
    assert conversion.on_retract == ON_RETRACT
    assert conversion.on_amend["soap_operation"] == "AmendSale"
    out = StringIO()
    call_command("export_config", stdout=out, stderr=StringIO())
    exported = {
        c["kind"]: c for c in json.loads(out.getvalue())["sources"][0]["feedback"]
    }
    assert exported["conversion"]["on_retract"] == ON_RETRACT
    assert exported["conversion"]["on_amend"]["method"] == "soap"
    assert exported["conversion"]["on_erase"] == ON_ERASE
    assert conversion.on_erase == ON_ERASE
    assert "on_retract" not in exported["return"]
    assert "on_erase" not in exported["return"]


def test_an_import_names_a_broken_erasure_request(tmp_path):
    document = {
        "sources": [
            {
                "slug": "bluesky",
                "name": "Bluesky",
                "feedback": [
                    {
                        "kind": "conversion",
                        "method": "json",
                        "url": "https://bluesky.example/api/sales",
                        "on_erase": {
                            "url": "https://bluesky.example/erase",
                            "method": "soap",
                        },
                    }
                ],
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(Exception, match="on_erase"):
        call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())
    assert not FeedbackConfig.objects.exists()


def test_an_import_names_a_broken_correction_request(tmp_path):
    document = {
        "sources": [
            {
                "slug": "bluesky",
                "name": "Bluesky",
                "feedback": [
                    {
                        "kind": "conversion",
                        "method": "json",
                        "url": "https://bluesky.example/api/sales",
                        "on_retract": {"method": "json", "url": "nope", "mappings": []},
                    }
                ],
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    err = StringIO()

    with pytest.raises(Exception, match="on_retract"):
        call_command("import_config", str(path), stdout=StringIO(), stderr=err)
    assert not FeedbackConfig.objects.exists()


def test_the_correction_window_is_a_policy_setting_in_config_as_code(tmp_path):
    document = {
        "buyers": [
            {
                "slug": "acme",
                "name": "Acme",
                "policy": {
                    "conversion": {"enabled": True, "retract_hours": 24},
                    "return": {"enabled": True},
                },
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())

    hours = dict(BuyerPolicy.objects.values_list("kind", "retract_hours"))
    assert hours == {"conversion": 24, "return": 72}
    out = StringIO()
    call_command("export_config", stdout=out, stderr=StringIO())
    policy = json.loads(out.getvalue())["buyers"][0]["policy"]
    assert policy["conversion"]["retract_hours"] == 24
    assert "retract_hours" not in policy["return"]  # the default is left out
