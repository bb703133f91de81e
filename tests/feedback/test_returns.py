"""Returns resolution at intake and in its services (DESIGN §10): review
states, the audit trail, caps, credits and forwarding on approval."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.intake.pipeline import ReceiveStatus, feedback_receive
from feedback.models import BuyerMonth, BuyerPolicy, Feedback
from feedback.months import month_of, months_recount
from feedback.returns.admission import allowance
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.services import (
    DecisionInvalid,
    TransitionRefused,
    return_approve,
    return_decide,
    return_dispute,
    return_reject,
)
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FlowFactory,
    UserFactory,
)

API = Feedback.Channel.API
State = Feedback.ReviewState


def send_return(buyer, delivery, reason="Wrong number"):
    return feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=API,
    )


def counted(delivery):
    row = BuyerMonth.objects.get(
        buyer=delivery.buyer, flow=delivery.flow, month=month_of(delivery.delivered_at)
    )
    return row.deliveries, row.returns


@pytest.fixture
def staff(db):
    return UserFactory(username="reviewer", is_staff=True)


# Review at intake ------------------------------------------------------------------


def test_auto_review_approves_at_intake_with_a_credit_and_a_step(buyer):
    delivery = DeliveryEventFactory(buyer=buyer, price=Decimal("40.00"))

    result = send_return(buyer, delivery)

    assert result.status == ReceiveStatus.ACCEPTED
    feedback = Feedback.objects.get()
    assert feedback.review_state == State.APPROVED
    step = ReturnTransition.objects.get()
    assert (step.from_state, step.to_state, step.actor) == ("", "approved", "buyer")
    credit = Credit.objects.get()
    assert (credit.amount, credit.buyer, credit.delivery) == (
        Decimal("40.00"),
        buyer,
        delivery,
    )
    assert counted(delivery) == (1, 1)
    # No cap: the answer says nothing of an allowance.
    assert result.returns_remaining is None


def test_credit_percent_sets_the_credit_rounded_to_the_cent(buyer):
    BuyerPolicyFactory(buyer=buyer, credit_percent=Decimal("33.33"))
    delivery = DeliveryEventFactory(buyer=buyer, price=Decimal("10.00"))

    send_return(buyer, delivery)

    assert Credit.objects.get().amount == Decimal("3.33")


def test_manual_review_leaves_the_return_pending_without_a_credit(buyer):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    delivery = DeliveryEventFactory(buyer=buyer)

    result = send_return(buyer, delivery)

    assert result.status == ReceiveStatus.ACCEPTED
    assert Feedback.objects.get().review_state == State.PENDING
    assert not Credit.objects.exists()
    assert counted(delivery) == (1, 1)  # a pending request counts against a cap


def test_refused_returns_have_no_review_state(buyer):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL, max_age_days=1)
    delivery = DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=3)
    )

    result = send_return(buyer, delivery)

    assert result.status == ReceiveStatus.REFUSED
    assert Feedback.objects.get().review_state == ""
    assert not ReturnTransition.objects.exists()


def test_rules_review_approves_what_the_rules_pass_and_holds_the_rest(buyer):
    BuyerPolicyFactory(
        buyer=buyer,
        review=BuyerPolicy.Review.RULES,
        auto_approve={
            "op": "and",
            "rules": [
                {
                    "lhv": "feedback.reason",
                    "op": "is included in",
                    "rhv": "Disconnected phone,Wrong number",
                }
            ],
        },
    )
    passes, holds = DeliveryEventFactory(buyer=buyer), DeliveryEventFactory(buyer=buyer)

    send_return(buyer, passes, reason="Wrong number")
    send_return(buyer, holds, reason="Duplicate")

    states = dict(Feedback.objects.values_list("delivery_id", "review_state"))
    assert states == {passes.pk: State.APPROVED, holds.pk: State.PENDING}


def test_rules_review_reads_the_evidence_checks(buyer):
    BuyerPolicyFactory(
        buyer=buyer,
        review=BuyerPolicy.Review.RULES,
        auto_approve={
            "op": "and",
            "rules": [
                {"lhv": "check.phone_valid", "op": "is equal to", "rhv": "false"}
            ],
        },
    )
    invalid = DeliveryEventFactory(buyer=buyer, lead__data={"phone_1": "5550000000"})
    valid = DeliveryEventFactory(buyer=buyer, lead__data={"phone_1": "2025550143"})

    send_return(buyer, invalid)
    send_return(buyer, valid)

    states = dict(Feedback.objects.values_list("delivery_id", "review_state"))
    assert states == {invalid.pk: State.APPROVED, valid.pk: State.PENDING}


# Transitions ------------------------------------------------------------------------


@pytest.fixture
def pending(buyer):
    BuyerPolicyFactory(
        buyer=buyer, review=BuyerPolicy.Review.MANUAL, credit_percent=Decimal(50)
    )
    delivery = DeliveryEventFactory(buyer=buyer, price=Decimal("30.00"))
    send_return(buyer, delivery)
    return Feedback.objects.get(delivery=delivery)


def test_approving_credits_the_policy_share_and_writes_a_step(pending, staff):
    return_approve(feedback=pending, user=staff, note="Number is dead")

    pending.refresh_from_db()
    assert pending.review_state == State.APPROVED
    credit = Credit.objects.get()
    assert (credit.amount, credit.decided_by) == (Decimal("15.00"), staff)
    step = ReturnTransition.objects.latest("pk")
    assert (step.from_state, step.to_state, step.actor, step.user, step.note) == (
        "pending",
        "approved",
        "staff",
        staff,
        "Number is dead",
    )


def test_a_decision_may_credit_part_of_the_price_but_never_more(pending, staff):
    with pytest.raises(DecisionInvalid) as refused:
        return_approve(feedback=pending, user=staff, credit_amount="30.01")
    assert refused.value.field == "credit_amount"
    assert "30.00" in refused.value.message

    with pytest.raises(DecisionInvalid) as refused:
        return_approve(feedback=pending, user=staff, credit_amount="7.505")
    assert refused.value.message == "At most two decimals."

    return_approve(feedback=pending, user=staff, credit_amount="7.500")

    assert Credit.objects.get().amount == Decimal("7.50")


def test_rejecting_stops_counting_and_disputing_counts_again(pending, staff):
    delivery = pending.delivery
    assert counted(delivery) == (1, 1)

    return_reject(feedback=pending, user=staff, note="Lead answered the phone")
    assert counted(delivery) == (1, 0)

    return_dispute(feedback=pending, user=UserFactory(), comment="It was a fax line")
    pending.refresh_from_db()
    assert pending.review_state == State.DISPUTED
    assert counted(delivery) == (1, 1)

    return_decide(feedback=pending, decision="reject", user=staff, note="Final")
    pending.refresh_from_db()
    assert pending.review_state == State.REJECTED
    assert counted(delivery) == (1, 0)
    assert not Credit.objects.exists()
    states = list(ReturnTransition.objects.values_list("from_state", "to_state"))
    assert states == [
        ("", "pending"),
        ("pending", "rejected"),
        ("rejected", "disputed"),
        ("disputed", "rejected"),
    ]


def test_a_disputed_return_approved_on_second_decision_is_credited(pending, staff):
    return_reject(feedback=pending, user=staff)
    return_dispute(feedback=pending, comment="See the recording")

    return_decide(feedback=pending, decision="approve", user=staff)

    pending.refresh_from_db()
    assert pending.review_state == State.APPROVED
    assert Credit.objects.get().amount == Decimal("15.00")


@pytest.mark.parametrize(
    ("setup", "step", "message"),
    [
        ([], "dispute", "This return is pending; it cannot be disputed."),
        (["approve"], "approve", "This return is approved; it cannot be approved."),
        (["approve"], "reject", "This return is approved; it cannot be rejected."),
        (["reject"], "reject", "This return is rejected; it cannot be rejected."),
        (
            ["reject", "dispute", "reject"],
            "dispute",
            "This return was disputed once already; the second decision is final.",
        ),
    ],
)
def test_invalid_transitions_are_refused_with_the_state(
    pending, staff, setup, step, message
):
    steps = {
        "approve": lambda: return_decide(feedback=pending, decision="approve"),
        "reject": lambda: return_decide(feedback=pending, decision="reject"),
        "dispute": lambda: return_dispute(feedback=pending, comment="No"),
    }
    for name in setup:
        steps[name]()
        pending.refresh_from_db()
    before = ReturnTransition.objects.count()

    with pytest.raises(TransitionRefused) as refused:
        steps[step]()

    assert refused.value.message == message
    assert refused.value.state == refused.value.feedback.review_state
    assert ReturnTransition.objects.count() == before


def test_disputes_close_after_the_policy_days(pending, staff):
    return_reject(feedback=pending, user=staff)

    later = timezone.now() + timedelta(days=7, minutes=1)
    with time_machine.travel(later), pytest.raises(TransitionRefused) as refused:
        return_dispute(feedback=pending, comment="Too late")

    assert refused.value.message == "The 7 days to dispute this rejection have passed."
    pending.refresh_from_db()
    assert pending.review_state == State.REJECTED


def test_a_rejected_return_still_holds_the_delivery_s_one_return(pending, staff):
    return_reject(feedback=pending, user=staff)

    again = send_return(pending.buyer, pending.delivery)

    assert again.status == ReceiveStatus.ALREADY_RETURNED


# Caps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "minimum", "deliveries", "expected"),
    [
        (Decimal(10), 5, 0, 5),
        (Decimal(10), 5, 49, 5),
        (Decimal(10), 5, 60, 6),
        (Decimal(10), 0, 69, 6),  # floor
        (Decimal("7.5"), 0, 100, 7),
        (Decimal(0), 2, 1000, 2),
    ],
)
def test_the_allowance_is_the_greater_of_the_minimum_and_the_share(
    percent, minimum, deliveries, expected
):
    policy = BuyerPolicy(kind=Kind.RETURN, cap_percent=percent, cap_min=minimum)
    assert allowance(policy, deliveries) == expected


def test_a_return_over_the_cap_is_refused_with_the_numbers(buyer):
    BuyerPolicyFactory(buyer=buyer, cap_percent=Decimal(10), cap_min=2)
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(12)]
    month = f"{month_of(deliveries[0].delivered_at):%B %Y}"

    answers = [send_return(buyer, d) for d in deliveries[:3]]

    assert [a.status for a in answers] == [
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.REFUSED,
    ]
    assert [a.returns_remaining for a in answers] == [1, 0, 0]
    refused = answers[2].feedback
    assert refused.outcome_reason == (
        f"Return cap reached: 2 of 2 returns allowed for {month} deliveries are used "
        "(10% of 12 deliveries, at least 2)."
    )
    assert refused.review_state == ""
    assert Credit.objects.count() == 2


def test_a_rejection_frees_a_place_under_the_cap(buyer, staff):
    BuyerPolicyFactory(
        buyer=buyer, review=BuyerPolicy.Review.MANUAL, cap_percent=Decimal(0), cap_min=1
    )
    first, second = DeliveryEventFactory(buyer=buyer), DeliveryEventFactory(buyer=buyer)
    send_return(buyer, first)
    assert send_return(buyer, second).status == ReceiveStatus.REFUSED

    return_reject(feedback=Feedback.objects.get(delivery=first), user=staff)
    third = DeliveryEventFactory(buyer=buyer)

    assert send_return(buyer, third).status == ReceiveStatus.ACCEPTED


def test_caps_count_the_month_the_returned_lead_was_delivered(buyer):
    BuyerPolicyFactory(buyer=buyer, cap_percent=Decimal(0), cap_min=1)
    now = timezone.now()
    last_month = DeliveryEventFactory(
        buyer=buyer, delivered_at=now.replace(day=1) - timedelta(days=2)
    )
    this_month = [DeliveryEventFactory(buyer=buyer) for _ in range(2)]

    answers = [send_return(buyer, d) for d in (last_month, *this_month)]

    assert [a.status for a in answers] == [
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.REFUSED,
    ]


def test_a_flow_policy_caps_its_flow_and_the_buyer_policy_the_rest(buyer):
    capped_flow, other_flow = FlowFactory(), FlowFactory()
    BuyerPolicyFactory(buyer=buyer, cap_percent=Decimal(0), cap_min=1)
    BuyerPolicyFactory(buyer=buyer, flow=capped_flow, cap_percent=Decimal(0), cap_min=2)
    in_flow = [
        DeliveryEventFactory(buyer=buyer, lead__flow=capped_flow) for _ in range(3)
    ]
    elsewhere = [
        DeliveryEventFactory(buyer=buyer, lead__flow=other_flow) for _ in range(2)
    ]

    flow_answers = [send_return(buyer, d).status for d in in_flow]
    other_answers = [send_return(buyer, d).status for d in elsewhere]

    accepted, refused = ReceiveStatus.ACCEPTED, ReceiveStatus.REFUSED
    assert flow_answers == [accepted, accepted, refused]
    assert other_answers == [accepted, refused]


def test_a_batch_counts_its_own_returns_against_the_cap(buyer):
    BuyerPolicyFactory(buyer=buyer, cap_percent=Decimal(0), cap_min=2)
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(3)]
    from feedback.intake.pipeline import feedback_receive_many

    results = feedback_receive_many(
        buyer=buyer,
        items=[{"event_id": d.event_id, "type": "return"} for d in deliveries],
        channel=API,
    )

    assert [r.status for r in results] == [
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.REFUSED,
    ]
    assert [r.returns_remaining for r in results] == [1, 0, 0]


# Month counters ---------------------------------------------------------------------


def test_recounting_rebuilds_the_counters_the_services_keep(buyer, staff):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(4)]
    for delivery in deliveries[:3]:
        send_return(buyer, delivery)
    return_reject(feedback=Feedback.objects.get(delivery=deliveries[0]), user=staff)
    kept = sorted(
        BuyerMonth.objects.values_list(
            "buyer", "flow", "month", "deliveries", "returns"
        )
    )

    months_recount(buyer_ids=[buyer.pk])

    rebuilt = sorted(
        BuyerMonth.objects.values_list(
            "buyer", "flow", "month", "deliveries", "returns"
        )
    )
    assert rebuilt == kept
    assert sum(row[3] for row in rebuilt) == 4
    assert sum(row[4] for row in rebuilt) == 2


# Forwarding on approval -------------------------------------------------------------


@pytest.fixture
def approved_only_config(db):
    def make(source):
        config = FeedbackConfig.objects.create(
            source=source,
            kind=Kind.RETURN,
            method=FeedbackConfig.Method.JSON,
            url="https://crm.example.com/returns",
            forward_on=FeedbackConfig.ForwardOn.APPROVED,
        )
        config.mappings.create(target="event_id", value="{{ event_id }}")
        return config

    return make


def test_forward_on_approved_waits_for_the_approval(buyer, staff, approved_only_config):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    delivery = DeliveryEventFactory(buyer=buyer)
    config = approved_only_config(delivery.source)

    send_return(buyer, delivery)
    assert not Notification.objects.exists()

    return_approve(feedback=Feedback.objects.get(), user=staff)

    notification = Notification.objects.get()
    assert notification.config == config
    assert notification.status == Notification.Status.PENDING


def test_forward_on_approved_never_forwards_a_rejected_return(
    buyer, staff, approved_only_config
):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    delivery = DeliveryEventFactory(buyer=buyer)
    approved_only_config(delivery.source)

    send_return(buyer, delivery)
    feedback = Feedback.objects.get()
    return_reject(feedback=feedback, user=staff)
    return_dispute(feedback=feedback, comment="Please look again")
    return_decide(feedback=feedback, decision="reject", user=staff)

    assert not Notification.objects.exists()


def test_forward_on_approved_sends_an_auto_approved_return_at_once(
    buyer, approved_only_config
):
    delivery = DeliveryEventFactory(buyer=buyer)
    approved_only_config(delivery.source)

    send_return(buyer, delivery)

    assert Notification.objects.count() == 1


# Under concurrency, on PostgreSQL ---------------------------------------------------


def _in_parallel(count, work):
    """Run `work(index)` in `count` threads released together; their results."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index):
        try:
            barrier.wait()
            try:
                results[index] = work(index)
            except Exception as exc:  # the test reads it
                results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_returns_against_an_allowance_of_five_accept_five():
    from tests.factories import BuyerFactory

    buyer = BuyerFactory()
    BuyerPolicyFactory(
        buyer=buyer,
        review=BuyerPolicy.Review.MANUAL,
        cap_percent=Decimal(25),  # 25 % of 20 deliveries
        cap_min=1,
    )
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(20)]

    results = _in_parallel(20, lambda i: send_return(buyer, deliveries[i]))

    statuses = [r.status for r in results]
    assert statuses.count(ReceiveStatus.ACCEPTED) == 5
    assert statuses.count(ReceiveStatus.REFUSED) == 15
    refused = [r.feedback.outcome_reason for r in results if r.status == "refused"]
    assert all(reason.startswith("Return cap reached: 5 of 5") for reason in refused)
    assert sorted(r.returns_remaining for r in results if r.status == "accepted") == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert Feedback.objects.filter(review_state=State.PENDING).count() == 5
    totals = BuyerMonth.objects.filter(buyer=buyer).values_list("deliveries", "returns")
    assert [sum(column) for column in zip(*totals, strict=True)] == [20, 5]


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_one_return_per_delivery_holds_for_pending_and_disputed_requests():
    from tests.factories import BuyerFactory

    buyer = BuyerFactory()
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    delivery = DeliveryEventFactory(buyer=buyer)

    first = _in_parallel(6, lambda i: send_return(buyer, delivery))
    assert sorted(r.status for r in first) == sorted(
        [ReceiveStatus.ACCEPTED] + [ReceiveStatus.ALREADY_RETURNED] * 5
    )
    request = Feedback.objects.get(outcome="success")
    assert request.review_state == State.PENDING

    return_reject(feedback=request)
    return_dispute(feedback=request, comment="Please look again")
    again = _in_parallel(6, lambda i: send_return(buyer, delivery))

    assert {r.status for r in again} == {ReceiveStatus.ALREADY_RETURNED}
    assert Feedback.objects.filter(outcome="success").count() == 1
    assert counted(delivery) == (1, 1)


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_approving_at_once_credit_once():
    from tests.factories import BuyerFactory

    buyer = BuyerFactory()
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    send_return(buyer, DeliveryEventFactory(buyer=buyer))
    feedback = Feedback.objects.get()

    results = _in_parallel(
        4, lambda i: return_decide(feedback=feedback, decision="approve")
    )

    refused = [r for r in results if isinstance(r, TransitionRefused)]
    assert len(refused) == 3
    assert {r.state for r in refused} == {State.APPROVED}
    assert Credit.objects.count() == 1
    assert ReturnTransition.objects.filter(to_state=State.APPROVED).count() == 1


# Dispute evidence -------------------------------------------------------------------


def _png(name="call-log.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png")


def test_evidence_is_stored_under_the_var_directory_of_the_moment(
    pending, staff, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    return_reject(feedback=pending, user=staff)

    return_dispute(feedback=pending, comment="See the log", evidence=_png())

    step = ReturnTransition.objects.get(to_state=State.DISPUTED)
    assert (step.evidence_name, step.evidence_type) == ("call-log.png", "image/png")
    stored = tmp_path / "evidence" / step.evidence.name
    assert stored.is_file()
    assert stored.read_bytes().startswith(b"\x89PNG")


def test_evidence_of_a_dispute_that_fails_is_not_left_behind(
    pending, staff, settings, tmp_path, monkeypatch
):
    settings.VAR_DIR = tmp_path
    return_reject(feedback=pending, user=staff)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr("feedback.returns.services.returns_counted", broken)
    with pytest.raises(RuntimeError):
        return_dispute(feedback=pending, comment="See the log", evidence=_png())

    assert not any(path.is_file() for path in (tmp_path / "evidence").rglob("*"))
    pending.refresh_from_db()
    assert pending.review_state == State.REJECTED
