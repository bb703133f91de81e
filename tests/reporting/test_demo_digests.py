"""The demo's digest: configured on a demo source, ready to preview."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from reporting.models import Digest
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


def test_the_demo_digest_is_configured_once_and_previews(client, staff_user):
    SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    out = io.StringIO()
    call_command("seed_demo_digests", stdout=out)
    call_command("seed_demo_digests", stdout=out)

    digest = Digest.objects.get()
    assert (digest.slug, digest.channel, digest.every) == (
        "bluesky-leads-weekly",
        "email",
        "week",
    )
    preview = reverse("admin:reporting_digest_preview", args=[digest.pk])
    assert preview in out.getvalue()
    client.force_login(staff_user)
    response = client.get(preview)
    assert response.status_code == 200
    assert "Bluesky Leads: feedback digest" in response.content.decode()


def test_without_the_demo_data_the_command_says_what_to_run():
    with pytest.raises(CommandError, match="run seed_demo first"):
        call_command("seed_demo_digests")
