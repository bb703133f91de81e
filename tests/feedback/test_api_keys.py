from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from feedback.models import ApiKey
from feedback.selectors import api_key_get_active
from feedback.services import api_key_create, api_key_revoke, hash_api_key
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db


def detail_url(event):
    return f"/api/v1/events/{event.event_id}"


def test_key_is_stored_only_as_a_hash(buyer):
    _, raw_key = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM feedback_apikey")
        dump = repr(cursor.fetchall())
    assert raw_key not in dump
    # lb_<visible prefix>_<secret>; the secret itself may contain underscores.
    secret = raw_key.split("_", 2)[2]
    assert len(secret) >= 40
    assert secret not in dump
    assert hash_api_key(raw_key) in dump


def test_x_api_key_and_bearer_both_authenticate(buyer, buyer_key):
    event = DeliveryEventFactory(buyer=buyer)
    raw_key = buyer_key[1]

    by_header = APIClient().get(detail_url(event), HTTP_X_API_KEY=raw_key)
    by_bearer = APIClient().get(
        detail_url(event), HTTP_AUTHORIZATION=f"Bearer {raw_key}"
    )

    assert by_header.status_code == by_bearer.status_code == 200


def test_key_in_query_string_is_not_accepted(buyer, buyer_key):
    event = DeliveryEventFactory(buyer=buyer)

    response = APIClient().get(
        detail_url(event), {"api_key": buyer_key[1], "key": buyer_key[1]}
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_X_API_KEY": "lb_00000000_not-a-real-key"},
        {"HTTP_AUTHORIZATION": "Bearer lb_00000000_not-a-real-key"},
        {"HTTP_AUTHORIZATION": "Bearer two parts"},
    ],
)
def test_wrong_key_is_401_problem(buyer, header):
    event = DeliveryEventFactory(buyer=buyer)

    response = APIClient().get(detail_url(event), **header)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_revocation_takes_effect_on_the_next_request(buyer, buyer_key, buyer_client):
    event = DeliveryEventFactory(buyer=buyer)
    assert buyer_client.get(detail_url(event)).status_code == 200

    api_key_revoke(api_key=buyer_key[0])

    assert buyer_client.get(detail_url(event)).status_code == 401


def test_inactive_buyer_keys_are_refused(buyer, buyer_key, buyer_client):
    event = DeliveryEventFactory(buyer=buyer)
    buyer.is_active = False
    buyer.save(update_fields=["is_active"])

    assert buyer_client.get(detail_url(event)).status_code == 401


def test_integration_keys_survive_the_buyer_filter(integration_key):
    assert api_key_get_active(raw_key=integration_key[1]) == integration_key[0]


def test_last_used_at_is_written_at_most_once_a_minute(
    buyer, buyer_key, buyer_client, django_assert_num_queries
):
    event = DeliveryEventFactory(buyer=buyer)
    api_key = buyer_key[0]
    buyer_client.get(detail_url(event))
    api_key.refresh_from_db()
    first_use = api_key.last_used_at
    assert first_use is not None

    # Within the minute: the key lookup and the event read, no UPDATE.
    with django_assert_num_queries(2):
        buyer_client.get(detail_url(event))
    api_key.refresh_from_db()
    assert api_key.last_used_at == first_use

    ApiKey.objects.filter(pk=api_key.pk).update(
        last_used_at=timezone.now() - timedelta(minutes=5)
    )
    buyer_client.get(detail_url(event))
    api_key.refresh_from_db()
    assert api_key.last_used_at > first_use


def test_create_api_key_command_prints_key_alone_on_last_line(buyer):
    out, err = StringIO(), StringIO()

    call_command("create_api_key", "--buyer", buyer.slug, stdout=out, stderr=err)

    raw_key = out.getvalue().strip().splitlines()[-1]
    api_key = api_key_get_active(raw_key=raw_key)
    assert api_key is not None
    assert api_key.buyer == buyer
    assert api_key.scope == ApiKey.Scope.BUYER


def test_create_api_key_command_for_integration():
    out = StringIO()

    call_command(
        "create_api_key", "--integration", "distribution", stdout=out, stderr=StringIO()
    )

    api_key = api_key_get_active(raw_key=out.getvalue().strip().splitlines()[-1])
    assert api_key is not None
    assert api_key.scope == ApiKey.Scope.INTEGRATION
    assert api_key.name == "distribution"
    assert api_key.buyer is None


def test_create_api_key_command_refuses_unknown_buyer():
    with pytest.raises(CommandError, match="No buyer with slug 'nobody'"):
        call_command("create_api_key", "--buyer", "nobody", stdout=StringIO())


def test_api_key_create_refuses_scope_mismatch(buyer):
    with pytest.raises(ValueError, match="needs a buyer"):
        api_key_create(scope=ApiKey.Scope.BUYER, name="x")
    with pytest.raises(ValueError, match="no buyer"):
        api_key_create(scope=ApiKey.Scope.INTEGRATION, name="x", buyer=buyer)
