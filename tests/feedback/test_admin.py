import re
from decimal import Decimal

import pytest
from django.contrib.messages import WARNING, get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    IdempotencyKey,
    Lead,
    OutcomeCode,
)
from feedback.selectors import api_key_get_active
from feedback.services import api_key_create, hash_api_key
from sources.models import Kind
from tests.factories import (
    BuyerFactory,
    BuyerMembershipFactory,
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    FlowFactory,
    LeadFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"lb_[0-9a-f]{8}_[A-Za-z0-9_-]+")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The query-count tests create a hundred users; PBKDF2 would take most of the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def changelist_url(model) -> str:
    return reverse(f"admin:feedback_{model._meta.model_name}_changelist")


def add_url(model) -> str:
    return reverse(f"admin:feedback_{model._meta.model_name}_add")


def change_url(obj) -> str:
    return reverse(f"admin:feedback_{obj._meta.model_name}_change", args=[obj.pk])


def delete_url(obj) -> str:
    return reverse(f"admin:feedback_{obj._meta.model_name}_delete", args=[obj.pk])


def delivery_with_feedback() -> DeliveryEvent:
    delivery = DeliveryEventFactory()
    FeedbackFactory(
        delivery=delivery,
        kind=Kind.RETURN,
        outcome_code=OutcomeCode.objects.get(code="bad_info"),
        reason="Wrong number",
        custom={"policy": "A-1"},
    )
    return delivery


def make_feedback() -> Feedback:
    buyer = BuyerFactory()
    api_key, _ = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
    return FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer),
        outcome_code=OutcomeCode.objects.get(code="converted"),
        revenue=Decimal("120.00"),
        quality_score=4,
        custom={"policy": "A-1"},
        api_key=api_key,
        submitted_by=UserFactory(),
    )


def make_buyer():
    buyer = BuyerFactory()
    BuyerPolicyFactory(buyer=buyer, kind=Kind.RETURN, max_age_days=30)
    BuyerPolicyFactory(buyer=buyer, kind=Kind.RETURN, flow=FlowFactory())
    BuyerMembershipFactory(buyer=buyer)
    api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
    return buyer


def make_idempotency_key():
    return IdempotencyKey.objects.create(
        owner="buyer:1",
        key="abc-123",
        request_hash="0" * 64,
        status_code=201,
        response_body={"outcome": "success"},
        content_type="application/json",
    )


OBJECT_MAKERS = {
    "flow": FlowFactory,
    "buyer": make_buyer,
    "buyerpolicy": lambda: BuyerPolicyFactory(rules={"op": "and", "rules": []}),
    "apikey": lambda: api_key_create(
        scope=ApiKey.Scope.INTEGRATION, name="distribution"
    )[0],
    "lead": LeadFactory,
    "deliveryevent": delivery_with_feedback,
    "outcomecode": lambda: OutcomeCode.objects.get(code="converted"),
    "feedback": make_feedback,
    "idempotencykey": make_idempotency_key,
}


# Every page renders -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OBJECT_MAKERS))
def test_changelist_and_change_page_render(staff_client, name):
    obj = OBJECT_MAKERS[name]()

    listing = staff_client.get(changelist_url(type(obj)))
    page = staff_client.get(change_url(obj))

    assert listing.status_code == 200
    assert listing.context["cl"].result_count >= 1
    assert page.status_code == 200


@pytest.mark.parametrize("name", ["flow", "buyer", "buyerpolicy", "apikey"])
def test_add_page_renders(staff_client, name):
    model = type(OBJECT_MAKERS[name]())

    assert staff_client.get(add_url(model)).status_code == 200


def test_filters_and_date_hierarchy_render(staff_client):
    delivery = delivery_with_feedback()
    year = delivery.delivered_at.year

    responses = [
        staff_client.get(
            changelist_url(DeliveryEvent),
            {"has_feedback": "yes", "buyer__id__exact": delivery.buyer_id},
        ),
        staff_client.get(changelist_url(DeliveryEvent), {"delivered_at__year": year}),
        staff_client.get(changelist_url(DeliveryEvent), {"has_feedback": "no"}),
        staff_client.get(
            changelist_url(Feedback),
            {"kind__exact": "return", "outcome__exact": "success"},
        ),
        staff_client.get(changelist_url(ApiKey), {"revoked": "no"}),
        staff_client.get(changelist_url(BuyerPolicy), {"flow__isempty": "1"}),
    ]

    assert [r.status_code for r in responses] == [200] * len(responses)
    assert responses[0].context["cl"].result_count == 1
    assert responses[2].context["cl"].result_count == 0


# Records are read-only ---------------------------------------------------------


@pytest.mark.parametrize("name", ["deliveryevent", "feedback", "lead"])
def test_records_cannot_be_added_changed_or_deleted(staff_client, name):
    obj = OBJECT_MAKERS[name]()
    model = type(obj)

    page = staff_client.get(change_url(obj))

    assert staff_client.get(add_url(model)).status_code == 403
    assert staff_client.get(delete_url(obj)).status_code == 403
    assert staff_client.post(change_url(obj), {}).status_code == 403
    assert not page.context["has_change_permission"]
    assert (
        "delete_selected"
        not in staff_client.get(changelist_url(model)).content.decode()
    )


def test_delivery_page_lists_its_feedback(staff_client):
    delivery = delivery_with_feedback()

    page = staff_client.get(change_url(delivery)).content.decode()

    assert "Wrong number" in page
    assert delivery.lead.public_id in page


# No query per row ----------------------------------------------------------------


def count_queries(client, url: str, rows: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == rows
    return len(queries)


def make_deliveries(n: int) -> None:
    for _ in range(n):
        delivery_with_feedback()


def make_feedbacks(n: int) -> None:
    for _ in range(n):
        make_feedback()


def make_leads(n: int) -> None:
    for _ in range(n):
        DeliveryEventFactory()


def make_api_keys(n: int) -> None:
    creator = UserFactory()
    for _ in range(n):
        api_key_create(
            scope=ApiKey.Scope.BUYER,
            name="crm",
            buyer=BuyerFactory(),
            created_by=creator,
        )


def make_buyers(n: int) -> None:
    for _ in range(n):
        make_buyer()


@pytest.mark.parametrize(
    ("model", "make"),
    [
        (DeliveryEvent, make_deliveries),
        (Feedback, make_feedbacks),
        (Lead, make_leads),
        (ApiKey, make_api_keys),
        (Buyer, make_buyers),
    ],
    ids=["deliveryevent", "feedback", "lead", "apikey", "buyer"],
)
def test_changelist_queries_do_not_grow_with_rows(staff_client, model, make):
    url = changelist_url(model)
    staff_client.get(url)  # warm caches (content types, session) first
    make(5)
    with_5 = count_queries(staff_client, url, 5)

    make(45)
    with_50 = count_queries(staff_client, url, 50)

    assert with_50 == with_5


# Search ----------------------------------------------------------------------------


@pytest.fixture
def target():
    """A delivery with feedback, among decoys that share parts of its data."""
    lead = LeadFactory(
        data={"email": "Mel.Gibson@Example.com", "phone_1": "(512) 789-1111"},
        email_normalized="mel.gibson@example.com",
        phone_normalized="5127891111",
    )
    delivery = DeliveryEventFactory(lead=lead, reference="CRM-12345")
    FeedbackFactory(delivery=delivery)
    decoy_lead = LeadFactory(
        data={"email": "gibson@example.com", "phone_1": "5127891112"},
        email_normalized="gibson@example.com",
        phone_normalized="5127891112",
    )
    for reference in ("CRM-123456", "CRM-1234"):
        FeedbackFactory(
            delivery=DeliveryEventFactory(lead=decoy_lead, reference=reference)
        )
    return delivery


SEARCH_TERMS = {
    "event id": lambda d: d.event_id,
    "reference": lambda d: d.reference,
    "lead id": lambda d: d.lead.public_id,
    "email": lambda d: "  MEL.Gibson@example.COM ",
    "formatted phone": lambda d: "(512) 789-1111",
    "phone with country code": lambda d: "+1 512.789.1111",
}


def search(client, model, term: str) -> list:
    response = client.get(changelist_url(model), {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize("how", sorted(SEARCH_TERMS))
def test_delivery_search(staff_client, target, how):
    found = search(staff_client, DeliveryEvent, SEARCH_TERMS[how](target))

    assert [d.pk for d in found] == [target.pk]


@pytest.mark.parametrize("how", sorted(SEARCH_TERMS))
def test_feedback_search(staff_client, target, how):
    found = search(staff_client, Feedback, SEARCH_TERMS[how](target))

    assert [f.delivery_id for f in found] == [target.pk]


@pytest.mark.parametrize("how", ["lead id", "email", "formatted phone"])
def test_lead_search(staff_client, target, how):
    found = search(staff_client, Lead, SEARCH_TERMS[how](target))

    assert [lead.pk for lead in found] == [target.lead_id]


@pytest.mark.parametrize("term", ["CRM-99999", "nobody@example.com", "(512) 000-0000"])
def test_search_without_match_finds_nothing(staff_client, target, term):
    assert search(staff_client, DeliveryEvent, term) == []


def test_autocomplete_for_buyers_searches_slug_and_name(staff_client):
    BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    BuyerFactory(slug="zenith-direct", name="Zenith Direct")

    response = staff_client.get(
        reverse("admin:autocomplete"),
        {
            "term": "acme",
            "app_label": "feedback",
            "model_name": "apikey",
            "field_name": "buyer",
        },
    )

    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Acme Insurance"]


# API keys ------------------------------------------------------------------------


def test_creating_a_key_shows_it_once_and_stores_only_its_hash(
    staff_client, staff_user, buyer
):
    response = staff_client.post(
        add_url(ApiKey),
        {"name": "Acme CRM", "scope": "buyer", "buyer": buyer.pk},
        follow=True,
    )

    assert response.status_code == 200
    shown = [m for m in get_messages(response.wsgi_request) if RAW_KEY.search(str(m))]
    assert len(shown) == 1
    assert shown[0].level == WARNING
    assert "will not be shown again" in str(shown[0])
    raw_key = RAW_KEY.search(str(shown[0])).group()
    assert response.content.decode().count(raw_key) == 1

    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.scope, api_key.buyer) == ("Acme CRM", "buyer", buyer)
    assert api_key.created_by == staff_user
    assert api_key.key_hash == hash_api_key(raw_key)
    assert raw_key.startswith(api_key.prefix)
    assert api_key_get_active(raw_key=raw_key) == api_key
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM feedback_apikey")
        dump = repr(cursor.fetchall())
    assert raw_key not in dump
    # lb_<visible prefix>_<secret>; the secret itself may contain underscores.
    secret = raw_key.removeprefix(f"{api_key.prefix}_")
    assert len(secret) >= 40
    assert secret not in dump

    for url in (change_url(api_key), changelist_url(ApiKey)):
        assert raw_key not in staff_client.get(url).content.decode()


def test_creating_an_integration_key(staff_client):
    response = staff_client.post(
        add_url(ApiKey), {"name": "distribution", "scope": "integration"}
    )

    assert response.status_code == 302
    api_key = ApiKey.objects.get()
    assert (api_key.scope, api_key.buyer) == ("integration", None)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"scope": "buyer"}, "A buyer key needs a buyer."),
        ({"scope": "integration", "buyer": "BUYER"}, "An integration key belongs"),
    ],
)
def test_key_scope_must_match_buyer(staff_client, buyer, data, error):
    data = {"name": "crm", **data}
    if data.get("buyer") == "BUYER":
        data["buyer"] = buyer.pk

    response = staff_client.post(add_url(ApiKey), data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert error in " ".join(form.errors["buyer"])
    assert error in response.content.decode()
    assert not ApiKey.objects.exists()


def test_existing_key_only_renames(staff_client, buyer, other_buyer):
    api_key, _ = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
    key_hash = api_key.key_hash

    response = staff_client.post(
        change_url(api_key),
        {
            "name": "Acme CRM (prod)",
            "scope": "integration",
            "buyer": other_buyer.pk,
            "key_hash": "0" * 64,
            "revoked_at": "2020-01-01 00:00:00",
        },
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.name == "Acme CRM (prod)"
    assert (api_key.scope, api_key.buyer) == ("buyer", buyer)
    assert api_key.key_hash == key_hash
    assert api_key.revoked_at is None


def test_revoke_action_revokes_and_reports_count(staff_client, buyer):
    keys = [
        api_key_create(scope=ApiKey.Scope.BUYER, name=f"crm {n}", buyer=buyer)[0]
        for n in range(3)
    ]
    kept = api_key_create(scope=ApiKey.Scope.INTEGRATION, name="distribution")[0]
    keys[0].revoked_at = keys[0].created_at
    keys[0].save(update_fields=["revoked_at"])

    response = staff_client.post(
        changelist_url(ApiKey),
        {"action": "revoke_keys", "_selected_action": [k.pk for k in keys]},
        follow=True,
    )

    assert response.status_code == 200
    for api_key in keys:
        api_key.refresh_from_db()
        assert api_key.revoked_at is not None
    kept.refresh_from_db()
    assert kept.revoked_at is None
    assert "Revoked 2 API keys." in [
        str(m) for m in get_messages(response.wsgi_request)
    ]


# Buyers and policies ------------------------------------------------------------


def buyer_form(**extra):
    data = {
        "name": "Acme Insurance",
        "slug": "acme-insurance",
        "is_active": "on",
        "policies-TOTAL_FORMS": "0",
        "policies-INITIAL_FORMS": "0",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    data.update(extra)
    return data


def policy_rows(*rows):
    data = {"policies-TOTAL_FORMS": str(len(rows))}
    for n, row in enumerate(rows):
        for key, value in row.items():
            data[f"policies-{n}-{key}"] = value
    return data


def test_buyer_is_added_with_policies_and_members(staff_client):
    user = UserFactory(username="carol")
    flow = FlowFactory()

    response = staff_client.post(
        add_url(Buyer),
        buyer_form(
            **policy_rows(
                {"kind": "return", "enabled": "on", "max_age_days": "30"},
                {
                    "kind": "return",
                    "flow": flow.pk,
                    "max_age_days": "90",
                    "rules": '{"op": "and", "rules": []}',
                },
            ),
            **{"memberships-TOTAL_FORMS": "1", "memberships-0-user": user.pk},
        ),
    )

    assert response.status_code == 302
    policies = BuyerPolicy.objects.order_by("max_age_days")
    assert [(p.flow, p.enabled, p.max_age_days) for p in policies] == [
        (None, True, 30),
        (flow, False, 90),
    ]
    assert policies[1].rules == {"op": "and", "rules": []}
    assert BuyerMembership.objects.get().user == user


def test_two_policies_for_the_same_kind_and_flow_are_refused(staff_client):
    response = staff_client.post(
        add_url(Buyer),
        buyer_form(
            **policy_rows(
                {"kind": "return", "max_age_days": "30"},
                {"kind": "return", "max_age_days": "60"},
            )
        ),
    )

    assert response.status_code == 200
    assert "two return policies for all flows" in response.content.decode()
    assert not BuyerPolicy.objects.exists()


def test_policy_rules_must_be_a_rule_set(staff_client, buyer):
    response = staff_client.post(
        add_url(BuyerPolicy),
        {"buyer": buyer.pk, "kind": "return", "max_age_days": "90", "rules": "[1, 2]"},
    )

    assert response.status_code == 200
    assert "rule set: must be an object" in response.content.decode()
    assert not BuyerPolicy.objects.exists()


def test_policy_rules_are_checked_by_the_rules_engine(staff_client, buyer):
    rule_set = (
        '{"rules": [{"lhv": "lead.age", "op": "is between", "rhv": "old-older"}]}'
    )
    response = staff_client.post(
        add_url(BuyerPolicy),
        {"buyer": buyer.pk, "kind": "return", "max_age_days": "90", "rules": rule_set},
    )

    assert response.status_code == 200
    assert "rules[0].rhv: invalid range" in response.content.decode()
    assert not BuyerPolicy.objects.exists()
