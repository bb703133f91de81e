"""`manage.py seed_demo`: the data `make demo` shows, and what it prints."""

import re
import shlex
import time
from datetime import timedelta
from io import StringIO
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Count, F
from django.utils import timezone

from feedback.demo.caps import cap_refusal
from feedback.demo.data import (
    BUYERS,
    DEMO_CONFIGS,
    HISTORY_DAYS,
    LEAD_ID_PREFIX,
    PRINTED_BUYER,
)
from feedback.demo.seed import DEMO_PASSWORD, demo_feedback_target
from feedback.forwarding.models import BatchRun, Notification
from feedback.intake.judge import ALREADY_RETURNED_REASON
from feedback.intake.pipeline import feedback_receive
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerMonth,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    Flow,
    Lead,
)
from feedback.months import month_of, months_recount
from feedback.returns.admission import CAP_REACHED, allowance, credit_amount
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.selectors import allowances_for, recent_months
from feedback.selectors import api_key_get_active
from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.services import feedback_config_problems
from tests.factories import BuyerPolicyFactory, DeliveryEventFactory, SourceFactory

pytestmark = pytest.mark.django_db

SMALL = ("--leads", "400")
# Enough for the manual buyer to have returns in every review state whatever the
# day: the history is laid out backwards from today.
MEDIUM = ("--leads", "1500")
State = Feedback.ReviewState
MANUAL_BUYER = next(b.slug for b in BUYERS if b.review == BuyerPolicy.Review.MANUAL)
CAPPED_BUYER = next(b.slug for b in BUYERS if b.cap_percent is not None)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # The demo's logins are real accounts; PBKDF2 would cost seconds per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def demo_allowlist(settings):
    # As make demo has it: the demo receiver is on 127.0.0.1.
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


def seed_demo(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def printed_key(output: str) -> str:
    match = re.search(r"^API key\s+(\S+)", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def printed_curl(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if line.startswith("curl ")]
    assert len(lines) == 1, output
    return shlex.split(lines[0])


def counts() -> dict[str, int]:
    return {
        "sources": Source.objects.count(),
        "flows": Flow.objects.count(),
        "buyers": Buyer.objects.count(),
        "policies": BuyerPolicy.objects.count(),
        "memberships": BuyerMembership.objects.count(),
        "users": User.objects.count(),
        "leads": Lead.objects.count(),
        "deliveries": DeliveryEvent.objects.count(),
        "feedback": Feedback.objects.count(),
        "active_keys": ApiKey.objects.filter(revoked_at__isnull=True).count(),
        "configs": FeedbackConfig.objects.count(),
        "mappings": FieldMapping.objects.count(),
        "review_steps": ReturnTransition.objects.count(),
        "credits": Credit.objects.count(),
        "months": BuyerMonth.objects.count(),
    }


def test_seeds_sources_flows_and_buyers_with_logins_and_keys():
    output = seed_demo(*SMALL)

    sources = list(Source.objects.all())
    assert len(sources) >= 3
    refusing = [s for s in sources if not s.accepts_return]
    assert refusing, "one source must refuse returns, so some feedback is refused"
    listed = [s for s in sources if s.accepts_return and s.return_reasons]
    assert listed
    assert all(len(s.return_reasons) >= 4 for s in listed)
    assert Flow.objects.count() == 2

    buyers = list(Buyer.objects.all())
    assert len(buyers) == 4
    for buyer in buyers:
        users = list(User.objects.filter(memberships__buyer=buyer))
        assert len(users) == 1
        assert users[0].check_password(DEMO_PASSWORD)
        assert not users[0].is_staff
        assert set(buyer.policies.values_list("kind", flat=True)) == set(Kind.values)
        keys = ApiKey.objects.filter(buyer=buyer, revoked_at__isnull=True)
        assert [k.scope for k in keys] == [ApiKey.Scope.BUYER]

    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    assert admin.check_password(DEMO_PASSWORD)
    assert f"user admin  password {DEMO_PASSWORD}" in output
    assert f"user acme  password {DEMO_PASSWORD}" in output


def test_default_size_history_looks_like_months_of_real_feedback():
    started = time.monotonic()
    seed_demo()
    elapsed = time.monotonic() - started

    now = timezone.now()
    leads = Lead.objects.filter(public_id__startswith=LEAD_ID_PREFIX)
    deliveries = DeliveryEvent.objects.filter(lead__in=leads)
    assert leads.count() >= 5000
    total = deliveries.count()
    assert total >= 5000
    assert elapsed < 30, f"seeding took {elapsed:.1f} s"

    oldest = deliveries.order_by("delivered_at").first()
    newest = deliveries.order_by("-delivered_at").first()
    assert oldest.delivered_at >= now - timedelta(days=HISTORY_DAYS + 1)
    assert oldest.delivered_at < now - timedelta(days=HISTORY_DAYS - 10)
    assert newest.delivered_at <= now
    assert newest.delivered_at > now - timedelta(days=3)
    assert all(
        re.fullmatch(r"[0-9a-f]{24}", event_id)
        for event_id in deliveries.values_list("event_id", flat=True)
    )
    assert not deliveries.filter(price__lte=0).exists()

    feedback = Feedback.objects.filter(delivery__in=deliveries)
    ok = feedback.filter(outcome=Feedback.Outcome.SUCCESS)
    conversions = ok.filter(kind=Kind.CONVERSION)
    assert 0.08 <= conversions.count() / total <= 0.12
    assert not conversions.filter(revenue__isnull=True).exists()
    assert not conversions.filter(revenue__lte=0).exists()

    returns = ok.filter(kind=Kind.RETURN)
    assert 0.065 <= returns.count() / total <= 0.095
    reasons = dict(
        returns.values_list("reason").annotate(n=Count("pk")).values_list("reason", "n")
    )
    assert len(reasons) >= 4
    assert all(n >= 10 for n in reasons.values()), reasons
    for row in returns.select_related("source"):
        assert row.reason in row.source.return_reasons

    statuses = ok.filter(kind=Kind.STATUS)
    assert statuses.count() / total >= 0.1
    assert set(statuses.values_list("outcome_code__code", flat=True)) == {
        "contacted",
        "no_contact",
        "not_interested",
    }

    refused = feedback.filter(outcome=Feedback.Outcome.FAILURE)
    assert 0.01 <= refused.count() / feedback.count() <= 0.2
    assert not refused.filter(outcome_reason="").exists()
    assert not ok.exclude(outcome_reason="").exists()
    kinds_refused = set(refused.values_list("kind", flat=True))
    assert {Kind.RETURN, Kind.STATUS} <= kinds_refused

    assert not feedback.filter(occurred_at__lt=F("delivery__delivered_at")).exists()
    assert not feedback.filter(received_at__lt=F("occurred_at")).exists()
    assert not feedback.filter(received_at__gt=now).exists()
    spread_days = {row.received_at.date() for row in feedback.only("received_at")}
    assert len(spread_days) >= 90, "feedback should span months, not one day"
    assert set(feedback.values_list("channel", flat=True)) == set(
        Feedback.Channel.values
    ) - {Feedback.Channel.ADMIN}


def test_second_run_duplicates_nothing_and_prints_a_working_key():
    first = seed_demo(*SMALL)
    before = counts()
    first_key = printed_key(first)
    assert api_key_get_active(raw_key=first_key) is not None

    second = seed_demo(*SMALL)

    assert counts() == before
    assert "already present" in second
    second_key = printed_key(second)
    assert second_key != first_key
    # Keys are stored hashed: the only way to print a working one is a new one.
    assert api_key_get_active(raw_key=first_key) is None
    active = api_key_get_active(raw_key=second_key)
    assert active is not None
    assert active.buyer.slug == PRINTED_BUYER


def test_printed_curl_posts_feedback_for_a_real_event(client):
    output = seed_demo(*SMALL)
    key = printed_key(output)
    argv = printed_curl(output)

    assert argv[:3] == ["curl", "-X", "POST"]
    url = urlsplit(argv[3])
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8000", "/feedback")
    event_id = re.fullmatch(r"event_id=([0-9a-f]{24})", url.query).group(1)
    headers = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-H"]
    assert headers == [f"X-API-Key: {key}"]
    body = "&".join(argv[i + 1] for i, arg in enumerate(argv) if arg == "-d")

    delivery = DeliveryEvent.objects.get(event_id=event_id)
    assert delivery.buyer.slug == PRINTED_BUYER
    assert not delivery.feedback.exists()
    assert delivery.source.accepts(Kind.CONVERSION)
    assert delivery.source.accepts(Kind.RETURN)
    assert delivery.delivered_at > timezone.now() - timedelta(days=30)

    # What curl -d sends: a form-encoded body.
    response = client.post(
        f"{url.path}?{url.query}",
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_API_KEY=key,
    )

    assert response.status_code == 201, response.content
    assert response.json()["outcome"] == "success"
    stored = delivery.feedback.get()
    assert stored.kind == Kind.CONVERSION
    assert stored.outcome == Feedback.Outcome.SUCCESS
    assert str(stored.revenue) == "1250.00"


def test_output_shows_logins_but_no_lead_data():
    output = seed_demo(*SMALL)

    assert DEMO_PASSWORD in output
    for data in Lead.objects.values_list("data", flat=True):
        assert data["email"] not in output
        assert data["phone_1"] not in output
        assert f"{data['first_name']} {data['last_name']}" not in output


# Between the sentences of a refusal.
SENTENCE_END = re.compile(r"(?<=\.) (?=[A-Z“])")


def test_stored_refusals_are_what_the_service_would_answer():
    seed_demo(*SMALL)
    refused = list(
        Feedback.objects.filter(outcome=Feedback.Outcome.FAILURE).select_related(
            "delivery", "buyer"
        )
    )
    assert len(refused) >= 5
    accepted = list(
        Feedback.objects.filter(
            outcome=Feedback.Outcome.SUCCESS, kind__in=[Kind.CONVERSION, Kind.STATUS]
        ).select_related("delivery", "buyer")[:20]
    )

    for row in refused:
        if row.outcome_reason.startswith(CAP_REACHED):
            # The month's deliveries and returns have moved on since: see
            # test_cap_refusals_are_the_intakes_words.
            continue
        result = feedback_receive(
            buyer=row.buyer,
            data={
                "event_id": row.delivery.event_id,
                "type": row.kind,
                "reason": row.reason,
            },
            channel=Feedback.Channel.API,
        )
        assert result.feedback is not None
        assert result.feedback.outcome == Feedback.Outcome.FAILURE
        # Time has passed since the demo's feedback: the service may add a late
        # return, never drop a reason the demo stored, except "already returned",
        # which it gives only when nothing else is wrong.
        stored = set(SENTENCE_END.split(row.outcome_reason))
        now_reasons = set(SENTENCE_END.split(result.feedback.outcome_reason))
        if any("has passed" in r for r in now_reasons - stored):
            stored.discard(ALREADY_RETURNED_REASON)
        assert stored <= now_reasons
    for row in accepted:
        result = feedback_receive(
            buyer=row.buyer,
            data={
                "event_id": row.delivery.event_id,
                "type": row.kind,
                "reason": row.reason,
            },
            channel=Feedback.Channel.API,
        )
        assert result.feedback is not None
        assert result.feedback.outcome == Feedback.Outcome.SUCCESS, result.reason


def test_existing_admin_keeps_its_password_and_it_is_not_printed():
    User.objects.create_superuser("admin", "root@example.com", "my-own-secret-1")

    output = seed_demo("--leads", "0")

    admin = User.objects.get(username="admin")
    assert admin.check_password("my-own-secret-1")
    assert "user admin  password (its existing password" in output
    assert "my-own-secret-1" not in output


def test_without_deliveries_prints_no_curl_and_a_later_run_adds_history():
    output = seed_demo("--leads", "0")

    assert "no curl example" in output
    assert not [line for line in output.splitlines() if line.startswith("curl ")]
    assert Buyer.objects.count() == 4

    seed_demo("--leads", "50")

    assert Lead.objects.filter(public_id__startswith=LEAD_ID_PREFIX).count() == 50


def test_a_receiver_the_guard_refuses_is_refused_before_seeding(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(CommandError, match="LEADBACK_OUTBOUND_ALLOWLIST"):
        seed_demo("--leads", "0")
    assert not FeedbackConfig.objects.exists()


def test_negative_lead_count_is_refused():
    with pytest.raises(CommandError, match="--leads"):
        seed_demo("--leads", "-1")


def test_demo_sources_forward_to_the_demo_receiver():
    output = seed_demo(*SMALL)

    configs = list(
        FeedbackConfig.objects.select_related("source").exclude(method="batch")
    )
    assert len(configs) == len(DEMO_CONFIGS)
    assert {c.method for c in configs} == {"json", "xml", "soap"}
    receiver = "http://127.0.0.1:8000/demo/receiver/"
    assert {c.url for c in configs} == {
        f"{receiver}json/",
        f"{receiver}xml/",
        f"{receiver}soap/?wsdl",
    }
    for config in configs:
        assert config.enabled
        assert config.source.accepts(config.kind)
        assert config.outcome_search_term
        assert config.mappings.exists()
        assert feedback_config_problems(config) == {}
        config.full_clean()
        assert config.url in output
    soap = next(c for c in configs if c.method == "soap")
    assert soap.soap_operation == "RecordConversion"
    assert "forwarded by the worker to the built-in demo receiver" in output
    assert "http://127.0.0.1:8000/admin/feedback/notification/" in output


def test_printed_target_source_forwards_conversions():
    seed_demo(*SMALL)
    target = demo_target()

    assert FeedbackConfig.objects.filter(
        source=target.source, kind=Kind.CONVERSION, enabled=True
    ).exists()


def demo_target() -> DeliveryEvent:
    target = demo_feedback_target(
        buyer=Buyer.objects.get(slug=PRINTED_BUYER), now=timezone.now()
    )
    assert target is not None
    return target


def test_base_url_moves_the_receiver_and_the_printed_urls():
    output = seed_demo(*SMALL, "--base-url", "http://127.0.0.1:8765/")

    real_time = FeedbackConfig.objects.exclude(method="batch")
    assert {c.url.split("/demo/")[0] for c in real_time} == {"http://127.0.0.1:8765"}
    assert "Admin      http://127.0.0.1:8765/admin/" in output
    assert urlsplit(printed_curl(output)[3]).netloc == "127.0.0.1:8765"


def test_existing_configs_are_kept_and_none_added_for_their_kind():
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    own = FeedbackConfig.objects.create(
        source=source, kind=Kind.RETURN, method="form", url="https://crm.example/r"
    )

    seed_demo("--leads", "0")
    seed_demo("--leads", "0", "--base-url", "http://127.0.0.1:9000")

    returns = FeedbackConfig.objects.filter(source=source, kind=Kind.RETURN)
    assert list(returns) == [own]
    assert returns.get().url == "https://crm.example/r"
    assert FeedbackConfig.objects.exclude(method="batch").count() == len(DEMO_CONFIGS)
    assert not FeedbackConfig.objects.filter(url__contains=":9000").exists()


@pytest.mark.parametrize(
    "base_url", ["127.0.0.1:8000", "ftp://127.0.0.1", "http://127.0.0.1:8000/app"]
)
def test_a_bad_base_url_is_refused(base_url):
    with pytest.raises(CommandError, match="--base-url"):
        seed_demo("--leads", "0", "--base-url", base_url)


# Returns resolution (DESIGN §10) ----------------------------------------------------


def demo_returns():
    return Feedback.objects.filter(
        lead__public_id__startswith=LEAD_ID_PREFIX,
        kind=Kind.RETURN,
        outcome=Feedback.Outcome.SUCCESS,
    )


def test_policies_put_one_buyer_on_manual_review_and_cap_another():
    seed_demo("--leads", "0")

    policies = {
        p.buyer.slug: p
        for p in BuyerPolicy.objects.select_related("buyer").filter(
            kind=Kind.RETURN, flow__isnull=True
        )
    }
    assert MANUAL_BUYER != CAPPED_BUYER
    manual = policies.pop(MANUAL_BUYER)
    assert manual.review == BuyerPolicy.Review.MANUAL
    assert (manual.credit_percent, manual.dispute_days) == (100, 7)
    assert not manual.capped
    capped = policies.pop(CAPPED_BUYER)
    assert capped.review == BuyerPolicy.Review.AUTO
    assert (capped.cap_percent, capped.cap_min) == (10, 3)
    for policy in policies.values():
        assert policy.review == BuyerPolicy.Review.AUTO
        assert not policy.capped


def test_manual_buyer_has_returns_in_every_review_state():
    output = seed_demo(*MEDIUM)

    returns = demo_returns().filter(buyer__slug=MANUAL_BUYER)
    states = dict(
        returns.values_list("review_state").annotate(n=Count("pk")).order_by()
    )
    assert set(states) == set(State.values), states
    assert (
        not demo_returns()
        .exclude(buyer__slug=MANUAL_BUYER)
        .exclude(review_state=State.APPROVED)
    )
    # The newest are the ones waiting.
    pending = returns.filter(review_state=State.PENDING)
    decided = returns.exclude(review_state=State.PENDING)
    assert pending.order_by("received_at").first().received_at >= max(
        decided.values_list("received_at", flat=True)
    )
    waiting = f"{states[State.PENDING]} pending, {states[State.DISPUTED]} disputed"
    assert f"({waiting}) in the admin's Returns review queue" in output

    steps = ReturnTransition.objects.filter(feedback__in=returns)
    for step in steps.filter(from_state=State.PENDING, to_state=State.REJECTED):
        assert step.actor == ReturnTransition.Actor.STAFF
        assert step.user.username == "admin"
        assert step.note
    for step in steps.filter(to_state=State.DISPUTED):
        assert step.actor == ReturnTransition.Actor.BUYER
        assert step.user.memberships.get().buyer.slug == MANUAL_BUYER
        assert step.note


def test_default_size_has_a_review_queue_worth_a_look_and_cap_refusals():
    seed_demo()

    returns = demo_returns().filter(buyer__slug=MANUAL_BUYER)
    pending = returns.filter(review_state=State.PENDING)
    assert 10 <= pending.count() <= 30
    # Reasons the review queue checks against the lead: phone, duplicate, state.
    reasons = set(pending.values_list("reason", flat=True))
    assert reasons & {"Bad phone", "Disconnected phone"}
    assert "Duplicate" in reasons
    assert 1 <= returns.filter(review_state=State.DISPUTED).count() <= 3
    second = returns.filter(transitions__to_state=State.DISPUTED).exclude(
        review_state=State.DISPUTED
    )
    assert {State.APPROVED, State.REJECTED} <= set(
        second.values_list("review_state", flat=True)
    )
    assert (
        returns.filter(review_state=State.APPROVED).count()
        > returns.filter(review_state=State.REJECTED).count()
    )

    # Returns past the cap were refused with the allowance of their time.
    buyer = Buyer.objects.get(slug=CAPPED_BUYER)
    policy = buyer.policies.get(kind=Kind.RETURN, flow=None)

    refused = Feedback.objects.filter(outcome_reason__startswith=CAP_REACHED)
    assert set(refused.values_list("buyer_id", flat=True)) <= {buyer.pk}
    for row in refused.select_related("delivery"):
        numbers = re.search(
            r"(\d+) of (\d+) .* of (\d+) deliveries", row.outcome_reason
        )
        used, allowed, deliveries = map(int, numbers.groups())
        assert used == allowed == allowance(policy, deliveries)
        month = month_of(row.delivery.delivered_at)
        assert row.outcome_reason == cap_refusal(
            policy, month=month, used=used, allowed=allowed, deliveries=deliveries
        )


def test_approved_returns_have_one_live_credit_and_no_other_has_one():
    seed_demo(*SMALL)

    returns = demo_returns().select_related("delivery")
    policies = {
        p.buyer_id: p
        for p in BuyerPolicy.objects.filter(kind=Kind.RETURN, flow__isnull=True)
    }
    credits = {c.feedback_id: c for c in Credit.objects.all()}
    assert len(credits) == Credit.objects.count()  # one per return
    assert not Credit.objects.exclude(voided_at=None).exists()
    approved = returns.filter(review_state=State.APPROVED)
    assert set(credits) == set(approved.values_list("pk", flat=True))
    for feedback in approved:
        credit = credits[feedback.pk]
        assert credit.amount == credit_amount(
            policies[feedback.buyer_id], feedback.delivery.price
        )
        assert (credit.buyer_id, credit.delivery_id) == (
            feedback.buyer_id,
            feedback.delivery_id,
        )
        approval = feedback.transitions.filter(to_state=State.APPROVED).get()
        assert credit.created_at == approval.created_at


def test_every_accepted_return_has_its_review_steps_in_order():
    seed_demo(*SMALL)
    now = timezone.now()

    returns = list(demo_returns().prefetch_related("transitions"))
    assert returns
    for feedback in returns:
        steps = sorted(feedback.transitions.all(), key=lambda step: step.pk)
        assert steps, feedback
        assert steps[0].from_state == ""
        assert steps[0].created_at == feedback.received_at
        assert steps[-1].to_state == feedback.review_state
        for before, after in pairwise(steps):
            assert after.from_state == before.to_state
            assert before.created_at <= after.created_at
            if after.to_state == State.DISPUTED:  # within the dispute days
                assert after.created_at - before.created_at < timedelta(days=7)
        assert steps[-1].created_at <= now
    assert not Credit.objects.filter(created_at__gt=now).exists()
    # The refused have no review state and no steps.
    refused = Feedback.objects.filter(
        kind=Kind.RETURN, outcome=Feedback.Outcome.FAILURE
    )
    assert not refused.exclude(review_state="").exists()
    assert not ReturnTransition.objects.filter(feedback__in=refused).exists()


def test_capped_buyer_has_a_few_returns_left_this_month():
    output = seed_demo(*SMALL)
    buyer = Buyer.objects.get(slug=CAPPED_BUYER)

    this_month, *older = allowances_for(buyer_id=buyer.pk, month_list=recent_months(4))
    assert this_month.month == month_of(timezone.now())
    assert 1 <= this_month.remaining <= 3, this_month
    assert (
        f"{buyer.name} has a return cap: {this_month.used} of {this_month.allowed} "
        f"returns used for {this_month.month:%B %Y} deliveries, "
        f"{this_month.remaining} left."
    ) in output
    for line in older:
        assert line.used <= line.allowed, line


def test_cap_refusals_are_the_intakes_words(buyer):
    policy = BuyerPolicyFactory(buyer=buyer, cap_percent=10, cap_min=3)
    delivery = DeliveryEventFactory(buyer=buyer)
    month = month_of(delivery.delivered_at)
    BuyerMonth.objects.filter(buyer=buyer).update(deliveries=268, returns=26)

    result = feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": "Bad phone"},
        channel=Feedback.Channel.API,
    )

    assert result.feedback.outcome == Feedback.Outcome.FAILURE
    assert result.feedback.outcome_reason == cap_refusal(
        policy, month=month, used=26, allowed=26, deliveries=268
    )


def test_month_counters_are_what_a_recount_makes():
    seed_demo(*SMALL)

    def counters():
        return set(
            BuyerMonth.objects.values_list(
                "buyer_id", "flow_id", "month", "deliveries", "returns"
            )
        )

    seeded = counters()
    assert seeded
    months_recount()
    assert counters() == seeded


def test_second_run_keeps_review_steps_and_credits_as_they_were():
    seed_demo(*SMALL)

    def review():
        return (
            set(ReturnTransition.objects.values_list("pk", "to_state", "created_at")),
            set(Credit.objects.values_list("pk", "amount", "created_at")),
            set(demo_returns().values_list("pk", "review_state")),
        )

    before = review()
    seed_demo(*SMALL)
    assert review() == before


def test_the_last_days_have_forwarding_in_every_state():
    """Delivery health, dead letters and batch runs have something to show."""
    output = seed_demo()

    notifications = Notification.objects.exclude(config__method="batch")
    states = set(notifications.values_list("status", flat=True))
    assert {"succeeded", "failed", "retrying", "dead"} <= states
    retried = notifications.filter(status="succeeded", attempt_count__gt=1)
    assert retried.exists()
    for notification in notifications.prefetch_related("attempts"):
        attempts = list(notification.attempts.all())
        assert len(attempts) == notification.attempt_count
        assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
        assert notification.created_at <= attempts[0].started_at
        assert notification.created_at > timezone.now() - timedelta(days=11)
        # What was sent is what the config's mappings make: ids, never contact data.
        assert notification.feedback.delivery.event_id in attempts[0].request_body
        assert notification.feedback.lead.data["email"] not in attempts[0].request_body
    dead = notifications.filter(status="dead").first()
    assert [a.outcome for a in dead.attempts.all()] == ["error"] * dead.attempt_count
    assert notifications.filter(status="retrying", next_attempt_at__gt=timezone.now())

    runs = BatchRun.objects.all()
    # Sent, one refused by the mail server; a day without conversions is empty.
    assert set(runs.values_list("status", flat=True)) - {"empty"} == {"sent", "failed"}
    assert runs.filter(status="failed").count() == 1
    assert runs.filter(status="sent", attempt_count=2).count() == 1
    for run in runs.exclude(status="empty"):
        assert run.row_count == run.notifications.count()
        assert bytes(run.content).startswith(b"event_id,converted_at,revenue")
    assert "Forwarding history for the last days:" in output
    assert "dead" in output


def test_a_second_run_adds_no_forwarding_history():
    seed_demo(*SMALL)
    before = (Notification.objects.count(), BatchRun.objects.count())
    seed_demo(*SMALL)
    assert (Notification.objects.count(), BatchRun.objects.count()) == before
