import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sources.models import Source
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sources_source_changelist")
ADD = reverse("admin:sources_source_add")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Only the staff user logs in here; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def change_url(source: Source) -> str:
    return reverse("admin:sources_source_change", args=[source.pk])


def source_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Bluesky Leads",
        "slug": "bluesky-leads",
        "accepts_conversion": "on",
        "conversion_reasons": "[]",
        "accepts_return": "on",
        "return_reasons": json.dumps(["Wrong number", "Disconnected phone"]),
        "status_reasons": "[]",
    }
    data.update(overrides)
    return data


def test_pages_render(staff_client):
    source = SourceFactory(return_reasons=["Wrong number"])

    listing = staff_client.get(CHANGELIST)
    page = staff_client.get(change_url(source))

    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    assert page.status_code == 200
    assert "Wrong number" in page.content.decode()
    assert staff_client.get(ADD).status_code == 200


def test_reasons_are_grouped_by_kind(staff_client):
    page = staff_client.get(ADD)

    fieldsets = {
        fieldset.name: [line.fields for line in fieldset]
        for fieldset in page.context["adminform"]
    }
    assert fieldsets["Conversions"] == [
        ["accepts_conversion"],
        ["conversion_reasons"],
    ]
    assert fieldsets["Returns"] == [["accepts_return"], ["return_reasons"]]
    assert fieldsets["Status updates"] == [["accepts_status"], ["status_reasons"]]


def test_search_by_slug_and_name(staff_client):
    SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    SourceFactory(slug="redwood-media", name="Redwood Media")

    by_slug = staff_client.get(CHANGELIST, {"q": "bluesky-"})
    by_name = staff_client.get(CHANGELIST, {"q": "redwood media"})

    assert [s.slug for s in by_slug.context["cl"].result_list] == ["bluesky-leads"]
    assert [s.slug for s in by_name.context["cl"].result_list] == ["redwood-media"]


def test_changelist_queries_do_not_grow_with_rows(staff_client):
    def count_queries(rows: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = staff_client.get(CHANGELIST)
        assert len(response.context["cl"].result_list) == rows
        return len(queries)

    staff_client.get(CHANGELIST)  # warm caches (content types, session) first
    SourceFactory.create_batch(5, return_reasons=["Wrong number"])
    with_5 = count_queries(5)

    SourceFactory.create_batch(45, return_reasons=["Wrong number"])
    with_50 = count_queries(50)

    assert with_50 == with_5


def test_source_is_saved_with_reasons(staff_client):
    response = staff_client.post(ADD, source_form())

    assert response.status_code == 302
    source = Source.objects.get(slug="bluesky-leads")
    assert source.return_reasons == ["Wrong number", "Disconnected phone"]
    assert source.accepts_return
    assert not source.accepts_status


def test_an_emptied_reasons_box_allows_any_reason(staff_client):
    source = SourceFactory(return_reasons=["Wrong number"])

    response = staff_client.post(
        change_url(source),
        source_form(name=source.name, slug=source.slug, return_reasons=""),
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.return_reasons == []


@pytest.mark.parametrize(
    ("reasons", "error"),
    [
        ('"Wrong number"', "Enter a list of reasons"),
        ('{"reason": "Wrong number"}', "Enter a list of reasons"),
        ('["Wrong number", "  "]', "Each reason must be non-blank text"),
        ('["Wrong number", 7]', "Each reason must be non-blank text"),
        ('["Wrong number", "wrong NUMBER"]', "is listed twice"),
        (json.dumps(["x" * 201]), "at most 200 characters"),
        ('["Wrong number"', "Enter a valid JSON"),
    ],
)
def test_bad_reasons_list_is_a_form_error(staff_client, reasons, error):
    source = SourceFactory(return_reasons=["Wrong number"])

    response = staff_client.post(
        change_url(source),
        source_form(name=source.name, slug=source.slug, return_reasons=reasons),
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.errors) == ["return_reasons"]
    assert error in " ".join(form.errors["return_reasons"])
    source.refresh_from_db()
    assert source.return_reasons == ["Wrong number"]
