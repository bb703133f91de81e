"""A buyer never sees another buyer's data in the portal: every portal URL that
names an object is walked with an object of the user's buyer (it works) and one
of another buyer (404, and nothing changes)."""

import pytest

from feedback.imports.services import feedback_import_create
from feedback.models import ApiKey, Feedback
from feedback.portal import urls as portal_urls
from sources.models import Kind
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db


def objects_of(buyer):
    delivery = DeliveryEventFactory(buyer=buyer)
    return {
        "delivery": delivery,
        "import": feedback_import_create(
            buyer=buyer,
            user=None,
            file=f"event_id,type\r\n{delivery.event_id},status\r\n".encode(),
            filename="feedback.csv",
        ),
        "key": ApiKey.objects.create(
            name="crm", scope="buyer", buyer=buyer, prefix="lb_x", key_hash=buyer.slug
        ),
    }


def delivery_detail(client, objects):
    return client.get(f"/portal/deliveries/{objects['delivery'].event_id}/")


def feedback_post(kind, data):
    def post(client, objects):
        return client.post(
            f"/portal/deliveries/{objects['delivery'].event_id}/feedback/{kind}/",
            {f"{kind}-{name}": value for name, value in data.items()},
        )

    post.__name__ = f"feedback_{kind}"
    return post


def key_revoke(client, objects):
    return client.post(f"/portal/keys/{objects['key'].public_id}/revoke/")


def import_detail(client, objects):
    return client.get(f"/portal/imports/{objects['import'].public_id}/")


def import_progress(client, objects):
    return client.get(f"/portal/imports/{objects['import'].public_id}/progress/")


def import_refused_csv(client, objects):
    return client.get(f"/portal/imports/{objects['import'].public_id}/refused.csv")


# URL name -> requests that exercise it with the objects of one buyer.
WALK = {
    "delivery-detail": [delivery_detail],
    "delivery-feedback": [
        feedback_post(Kind.CONVERSION, {"kind": "conversion", "revenue": "10"}),
        feedback_post(Kind.RETURN, {"kind": "return", "reason": "Duplicate"}),
        feedback_post(Kind.STATUS, {"kind": "status", "reason": "Called"}),
    ],
    "apikey-revoke": [key_revoke],
    "import-detail": [import_detail],
    "import-progress": [import_progress],
    "import-refused-csv": [import_refused_csv],
}
REQUESTS = [request for requests in WALK.values() for request in requests]


def test_every_portal_url_that_names_an_object_is_walked():
    with_objects = {
        pattern.name
        for pattern in portal_urls.urlpatterns
        if pattern.pattern.converters
    }
    assert with_objects == set(WALK)


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.__name__)
def test_own_object_works(client, buyer, buyer_user, request_):
    client.force_login(buyer_user)
    response = request_(client, objects_of(buyer))
    assert response.status_code in (200, 302)


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.__name__)
def test_another_buyers_object_is_404_and_untouched(
    client, buyer_user, other_buyer, request_
):
    client.force_login(buyer_user)
    theirs = objects_of(other_buyer)
    response = request_(client, theirs)
    assert response.status_code == 404
    assert not Feedback.objects.exists()
    theirs["key"].refresh_from_db()
    assert theirs["key"].revoked_at is None


def test_an_unknown_object_is_the_same_404(client, buyer_user):
    client.force_login(buyer_user)
    assert client.get(f"/portal/deliveries/{'0' * 24}/").status_code == 404
    response = client.post("/portal/keys/00000000-0000-4000-8000-000000000000/revoke/")
    assert response.status_code == 404


def test_the_selection_form_treats_another_buyers_delivery_as_unknown(
    client, buyer_user, other_buyer
):
    client.force_login(buyer_user)
    theirs = DeliveryEventFactory(buyer=other_buyer)
    response = client.post(
        "/portal/deliveries/feedback/",
        {"event_ids": [theirs.event_id], "kind": "return", "reason": "Duplicate"},
    )
    assert "Unknown event id." in response.content.decode()
    assert theirs.lead.display_name not in response.content.decode()
    assert not Feedback.objects.exists()


def test_search_never_finds_another_buyers_delivery(client, buyer_user, other_buyer):
    client.force_login(buyer_user)
    theirs = DeliveryEventFactory(buyer=other_buyer)
    for query in (theirs.event_id, theirs.reference, theirs.lead.data["email"]):
        body = client.get("/portal/", {"q": query}).content.decode()
        assert "No deliveries match these filters." in body
        assert f'name="event_ids" value="{theirs.event_id}"' not in body
        assert theirs.lead.display_name not in body
