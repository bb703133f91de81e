"""A buyer never sees another buyer's data in the portal: every portal URL that
names an object is walked with an object of the user's buyer (it works) and one
of another buyer (404, and nothing changes)."""

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile

from feedback.imports.services import feedback_import_create
from feedback.intake.pipeline import feedback_receive
from feedback.models import ApiKey, BuyerPolicy, Feedback
from feedback.portal import urls as portal_urls
from feedback.returns.models import ReturnTransition
from feedback.returns.services import return_dispute, return_reject
from sources.models import Kind
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


@pytest.fixture(autouse=True)
def evidence_storage(tmp_path, monkeypatch):
    field = ReturnTransition._meta.get_field("evidence")
    storage = FileSystemStorage(location=tmp_path / "evidence", base_url=None)
    monkeypatch.setattr(field, "storage", storage)


def rejected_return(buyer):
    """A return of a new delivery, requested and rejected through the services."""
    result = feedback_receive(
        buyer=buyer,
        data={"event_id": DeliveryEventFactory(buyer=buyer).event_id, "type": "return"},
        channel=Feedback.Channel.API,
    )
    return return_reject(feedback=result.feedback, note="Answers the phone.")


def objects_of(buyer):
    delivery = DeliveryEventFactory(buyer=buyer)
    BuyerPolicy.objects.get_or_create(
        buyer=buyer, kind=Kind.RETURN, flow=None, review=BuyerPolicy.Review.MANUAL
    )
    disputed = return_dispute(
        feedback=rejected_return(buyer),
        comment="It rang out.",
        evidence=SimpleUploadedFile("log.png", PNG, content_type="image/png"),
    )
    return {
        "rejected": rejected_return(buyer),
        "disputed": disputed,
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


def return_detail(client, objects):
    return client.get(f"/portal/returns/{objects['disputed'].public_id}/")


def return_dispute_post(client, objects):
    return client.post(
        f"/portal/returns/{objects['rejected'].public_id}/dispute/",
        {"comment": "It rang out."},
    )


def feedback_retract_post(client, objects):
    return client.post(
        f"/portal/feedback/{objects['rejected'].public_id}/retract/",
        {"reason": "Sent by mistake"},
    )


def feedback_amend_post(client, objects):
    return client.post(
        f"/portal/feedback/{objects['rejected'].public_id}/amend/",
        {"revenue": "10.00"},
    )


def return_evidence(client, objects):
    return client.get(f"/portal/returns/{objects['disputed'].public_id}/evidence/3/")


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
    "return-detail": [return_detail],
    "return-dispute": [return_dispute_post],
    "return-evidence": [return_evidence],
    "feedback-correct": [feedback_retract_post, feedback_amend_post],
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
    fields = ("pk", "review_state", "retracted_at", "revenue")
    states = list(Feedback.objects.order_by("pk").values_list(*fields))
    response = request_(client, theirs)
    assert response.status_code == 404
    assert list(Feedback.objects.order_by("pk").values_list(*fields)) == states
    theirs["key"].refresh_from_db()
    assert theirs["key"].revoked_at is None


def test_an_unknown_object_is_the_same_404(client, buyer_user):
    client.force_login(buyer_user)
    assert client.get(f"/portal/deliveries/{'0' * 24}/").status_code == 404
    response = client.post("/portal/keys/00000000-0000-4000-8000-000000000000/revoke/")
    assert response.status_code == 404
    unknown = "/portal/returns/00000000-0000-4000-8000-000000000000/"
    assert client.get(unknown).status_code == 404
    assert client.get(f"{unknown}evidence/1/").status_code == 404


def test_the_selection_form_treats_another_buyers_delivery_as_unknown(
    client, buyer_user, other_buyer
):
    client.force_login(buyer_user)
    theirs = DeliveryEventFactory(buyer=other_buyer)
    response = client.post(
        "/portal/deliveries/feedback/",
        {"event_ids": [theirs.event_id], "kind": "return", "reason": "Duplicate"},
    )
    assert "No delivery of yours has this event id." in response.content.decode()
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
