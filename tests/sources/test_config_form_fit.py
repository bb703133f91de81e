"""The feedback config form fits the method: sections named for the methods
they serve, criteria and mappings near the top, and a warning before two
configs forward every feedback to the same place."""

import re

import pytest
from django.urls import reverse

from sources.models import FeedbackConfig
from sources.services import (
    feedback_config_destination,
    feedback_config_same_destination,
)
from tests.factories import SourceFactory
from tests.sources.test_config_admin import config_form

pytestmark = pytest.mark.django_db

ADD = reverse("admin:sources_feedbackconfig_add")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def fieldsets(page: str) -> dict[str, str]:
    """Each fieldset's heading and its class attribute."""
    found = re.findall(
        r'<fieldset class="module aligned ([^"]*)"[^>]*>'
        r'.*?class="fieldset-heading">([^<]+)<',
        page,
        re.S,
    )
    return {name: classes for classes, name in found}


def test_each_section_names_the_methods_it_is_for(staff_client):
    page = staff_client.get(ADD).content.decode()
    sections = fieldsets(page)
    assert sections["SOAP"].split() == ["for-methods", "soap"]
    assert sections["Batch file"].split() == ["for-methods", "batch"]
    assert "batch" not in sections["Authentication"].split()
    assert "batch" not in sections["Reading the answer"].split()
    assert "soap" not in sections["Signing"].split()
    assert "collapse" in sections["Signing"].split()
    assert "for-methods" not in sections["Criteria"]
    assert "config_form.js" in page


def test_criteria_come_right_after_the_destination_with_a_jump_bar(staff_client):
    page = staff_client.get(ADD).content.decode()
    order = re.findall(r'class="fieldset-heading">([^<]+)<', page)
    assert order[:2] == ["Criteria", "Authentication"]
    jump = re.search(r'<nav class="config-jump".*?</nav>', page, re.S).group(0)
    assert 'href="#mappings-group"' in jump
    assert 'href="#config-preview"' in jump
    criteria = re.search(r'href="#([^"]+)" data-jump="criteria"', jump).group(1)
    assert f'id="{criteria}" class="fieldset-heading">Criteria<' in page


def test_a_second_config_to_the_same_url_is_held_until_confirmed(staff_client):
    source = SourceFactory(name="Bluesky Leads")
    first = FeedbackConfig.objects.create(
        source=source, kind="return", method="json", url="https://returns.example/api"
    )

    response = staff_client.post(ADD, config_form(source))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"The config “{first}” already sends Bluesky Leads&#x27;s return" in page
    assert "every return is forwarded twice" in page
    assert 'name="save_duplicate"' in page
    assert FeedbackConfig.objects.count() == 1

    saved = staff_client.post(ADD, config_form(source) | {"save_duplicate": "on"})

    assert saved.status_code == 302
    assert FeedbackConfig.objects.count() == 2


@pytest.mark.parametrize(
    ("changes", "warned"),
    [
        ({}, True),
        ({"url": "https://returns.example/api "}, True),
        ({"url": "https://other.example/api"}, False),
        ({"kind": "conversion"}, False),
        ({"method": "xml"}, False),
        ({"enabled": ""}, False),
    ],
)
def test_what_counts_as_the_same_destination(staff_client, changes, warned):
    source = SourceFactory()
    FeedbackConfig.objects.create(
        source=source, kind="return", method="json", url="https://returns.example/api"
    )
    data = {k: v for k, v in (config_form(source) | changes).items() if v != ""}
    response = staff_client.post(ADD, data)
    assert ("forwarded twice" in response.content.decode()) is warned
    assert (response.status_code == 302) is not warned


def test_a_disabled_twin_is_no_duplicate_and_a_config_is_not_its_own(staff_client):
    source = SourceFactory()
    config = FeedbackConfig.objects.create(
        source=source, kind="return", method="json", url="https://a.example/x"
    )
    assert feedback_config_same_destination(config, exclude_pk=config.pk) is None
    FeedbackConfig.objects.create(
        source=source,
        kind="return",
        method="json",
        url="https://a.example/x",
        enabled=False,
    )
    assert feedback_config_same_destination(config, exclude_pk=config.pk) is None


@pytest.mark.parametrize(
    ("fields", "destination"),
    [
        ({"method": "json", "url": " https://a.example/x "}, "https://a.example/x"),
        (
            {
                "method": "batch",
                "batch_transport": "email",
                "batch_email_to": ["B@x.example", "a@x.example"],
            },
            "email to a@x.example, b@x.example",
        ),
        (
            {
                "method": "batch",
                "batch_transport": "sftp",
                "batch_host": "Files.Example",
                "batch_directory": "/in/",
            },
            "sftp://files.example/in",
        ),
        (
            {
                "method": "batch",
                "batch_transport": "s3",
                "batch_s3_bucket": "drop",
                "batch_directory": "returns/",
            },
            "s3://drop/returns",
        ),
    ],
)
def test_destinations_read_as_a_person_names_them(fields, destination):
    assert feedback_config_destination(FeedbackConfig(**fields)) == destination
