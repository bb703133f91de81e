"""Intake, step four: writing judged feedback and its notifications.

Two strategies over the same rows. `store_live` (API, portal, admin) inserts
model instances, creates the notifications in the same transaction, queues them
once committed and sends to sync configs while the caller waits. `store_copy`
(CSV chunks, inside the chunk's transaction) streams plain rows with COPY on
PostgreSQL and leaves the notifications to the periodic sweep.
"""

import time
import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction

from feedback.bulk import instances_copy, objects_copy, rows_copy
from feedback.forwarding.engine import (
    notification_deliver,
    notifications_claim_due,
    notifications_enqueue,
    notifications_enqueue_on_commit,
)
from feedback.forwarding.models import Notification
from feedback.forwarding.notifications import (
    Configs,
    notifications_build,
    notifications_create,
    notifications_forget,
    notifications_prepare,
    notifications_remember,
)
from feedback.intake.judge import ALREADY_RETURNED_REASON
from feedback.intake.lookup import BULK_MIN_ITEMS, DeliveryRow, LeadRow
from feedback.intake.parse import FieldError, ReceiveResult, ReceiveStatus, join_errors
from feedback.models import ApiKey, Buyer, Feedback, Flow, OutcomeCode
from feedback.returns.admission import (
    Admission,
    Policies,
    returns_admit,
    returns_cap,
    returns_record,
)
from feedback.returns.services import return_refused_after_acceptance
from feedback.rows import Insert, default_connection
from feedback.suppression.services import (
    suppression_add_for_feedback,
    suppression_wanted,
)
from sources.models import Kind, Source


def store_live(
    pending: list[tuple[ReceiveResult, Feedback]],
    *,
    configs: Configs | None,
    policies: Policies,
) -> None:
    """Insert the feedback and its notifications, then send to sync configs."""
    _deliver_sync(pending, _write_live(pending, configs=configs, policies=policies))


def _write_live(
    pending: list[tuple[ReceiveResult, Feedback]],
    *,
    configs: Configs | None,
    policies: Policies,
) -> list[Notification]:
    """Insert the feedback and, in the same transaction, its notifications,
    what accepted returns write (returns/admission.py) and the suppression
    entries accepted feedback adds (suppression/services.py)."""
    feedbacks = [feedback for _, feedback in pending]
    if not _has_returns(feedbacks) and _nothing_to_notify(feedbacks, configs):
        if suppression_wanted(feedbacks):
            # The feedback and the entries it adds commit together. No savepoint
            # around the INSERT: only an accepted return can break the one
            # constraint `_store_one` catches, and there is none here.
            with transaction.atomic():
                for _, feedback in pending:
                    feedback.pk = None
                    _insert_feedback(feedback)
                suppression_add_for_feedback(feedbacks)
        else:
            # A single INSERT is a transaction of its own: no BEGIN and COMMIT.
            for result, feedback in pending:
                _store_one(result, feedback)
        notifications_remember(feedbacks, [])  # the answer reads none back
        return []
    if _one_statement(feedbacks):
        notifications = notifications_prepare(
            feedbacks=feedbacks, configs=configs, queue=True
        )
        _insert_with_notifications(feedbacks[0], notifications)
        notifications_remember(feedbacks, notifications)
        _enqueue_on_commit(notifications)
        return notifications
    try:
        with transaction.atomic():
            admissions = _admit(pending, policies)
            if connection.vendor == "postgresql" and len(feedbacks) >= BULK_MIN_ITEMS:
                instances_copy(feedbacks)
            elif len(feedbacks) == 1:
                feedbacks[0].pk = None
                _insert_feedback(feedbacks[0])
            else:
                Feedback.objects.bulk_create(feedbacks)
            returns_record(feedbacks, admissions, policies=policies)
            _cap(pending, admissions)
            suppression_add_for_feedback(feedbacks)
            notifications = notifications_create(
                feedbacks=feedbacks, configs=configs, queue=True
            )
    except IntegrityError:
        # Another request returned one of these deliveries since we looked. Store
        # one by one so only the loser of that race becomes "already returned".
        with transaction.atomic():
            admissions = _admit(pending, policies)
            for result, feedback in pending:
                _store_one(result, feedback)
            returns_record(feedbacks, admissions, policies=policies)
            _cap(pending, admissions)
            suppression_add_for_feedback(feedbacks)
            notifications = notifications_create(
                feedbacks=feedbacks, configs=configs, queue=True
            )
    _enqueue_on_commit(notifications)
    return notifications


def _enqueue_on_commit(notifications: list[Notification]) -> None:
    # Sync configs are sent right here once committed (`_deliver_sync`), unless an
    # outer transaction is open: then they take the queue like the others.
    outer = connection.in_atomic_block
    notifications_enqueue_on_commit(
        [n for n in notifications if outer or not _is_sync(n)]
    )


def _one_statement(feedbacks: list[Feedback]) -> bool:
    """Whether the feedback and its notifications are all this request writes,
    so that one statement can write them (`_insert_with_notifications`)."""
    return (
        len(feedbacks) == 1
        and connection.vendor == "postgresql"
        and not _has_returns(feedbacks)
        and not suppression_wanted(feedbacks)
    )


class _InsertWithNotifications:
    """A feedback and its notifications in one statement (PostgreSQL): the
    notifications' INSERT takes the feedback's id from a data-modifying WITH,
    so both are stored or neither, and the statement is the transaction: no
    BEGIN and COMMIT round trips, one INSERT fewer."""

    def __init__(self) -> None:
        self.notification_fields = [
            f
            for f in Notification._meta.concrete_fields
            if not f.primary_key and f.attname != "feedback_id"
        ]

        self._sql: dict[int, str] = {}  # by number of notifications

    def sql(self, count: int) -> str:
        if count not in self._sql:
            self._sql[count] = self._build(count)
        return self._sql[count]

    def _build(self, count: int) -> str:
        quote = connection.ops.quote_name
        columns = ", ".join(
            quote(cast(str, f.column))
            for f in [
                Notification._meta.get_field("feedback"),
                *self.notification_fields,
            ]
        )
        row = ", ".join(["(SELECT id FROM f)", *["%s"] * len(self.notification_fields)])
        values = ", ".join([f"({row})"] * count)
        table = quote(Notification._meta.db_table)
        pk = quote(cast(str, Notification._meta.pk.column))
        feedback_id = quote(Notification._meta.get_field("feedback").column)
        return (
            f"WITH f AS ({_insert_feedback.sql}) "  # noqa: S608 - names from _meta
            f"INSERT INTO {table} ({columns}) VALUES {values} "
            f"RETURNING {pk}, {feedback_id}"
        )

    def __call__(self, feedback: Feedback, notifications: list[Notification]) -> None:
        if not notifications:
            feedback.pk = None
            _insert_feedback(feedback)
            return
        db = default_connection()
        values = [
            field.get_db_prep_save(field.pre_save(feedback, True), db)
            for field in _insert_feedback.fields
        ]
        for notification in notifications:
            values += [
                field.get_db_prep_save(field.pre_save(notification, True), db)
                for field in self.notification_fields
            ]
        with db.cursor() as cursor:
            cursor.execute(self.sql(len(notifications)), values)
            returned = cursor.fetchall()
        feedback.pk = returned[0][1]
        for instance in (feedback, *notifications):
            instance._state.adding = False
            instance._state.db = db.alias
        for notification, (pk, feedback_id) in zip(
            notifications, returned, strict=True
        ):
            notification.pk, notification.feedback_id = pk, feedback_id


def _is_sync(notification: Notification) -> bool:
    return notification.config is not None and notification.config.sync


def _deliver_sync(
    pending: list[tuple[ReceiveResult, Feedback]], notifications: list[Notification]
) -> None:
    """Send to sync configs while the buyer waits (DESIGN §4.4), within the
    deadline. A source's refusal makes the feedback refused with its reason; a
    timeout or error leaves it accepted, and the notification retries as usual."""
    sync = [
        n
        for n in notifications
        if n.status == Notification.Status.PENDING and _is_sync(n)
    ]
    if not sync or connection.in_atomic_block:
        return
    deadline = time.monotonic() + settings.LEADBACK_SYNC_DEADLINE_S
    refusals: dict[int, list[str]] = {}
    for claim in notifications_claim_due(ids=[n.pk for n in sync]):
        remaining = deadline - time.monotonic()
        if remaining <= 0.1:
            notifications_enqueue([claim])
            continue
        row = notification_deliver(claim=claim, deadline_s=remaining)
        if row is not None and row.status == Notification.Status.FAILED:
            source = next(n.source for n in sync if n.pk == row.pk)
            refusals.setdefault(row.feedback_id, []).append(
                f"{source.name} refused it: {row.reason or 'no reason given'}"
            )
    sent = {n.feedback_id for n in sync}
    for result, feedback in pending:
        if feedback.pk in sent:
            # Their rows changed while being sent: the answer reads them again.
            notifications_forget(feedback)
        reasons = refusals.get(feedback.pk)
        if reasons:
            feedback_refuse_by_source(feedback=feedback, reason="; ".join(reasons))
            result.status = ReceiveStatus.REFUSED
            result.errors = [FieldError("", feedback.outcome_reason)]


def feedback_refuse_by_source(*, feedback: Feedback, reason: str) -> Feedback:
    """Record that a sync source refused an accepted feedback: it becomes refused."""
    feedback.outcome = Feedback.Outcome.FAILURE
    feedback.outcome_reason = reason[:500]
    feedback.save(update_fields=["outcome", "outcome_reason"])
    return_refused_after_acceptance(feedback=feedback, reason=reason)
    return feedback


def _has_returns(feedbacks: list[Any]) -> bool:
    return any(
        f.kind == Kind.RETURN and f.outcome == Feedback.Outcome.SUCCESS
        for f in feedbacks
    )


def _admit(
    pending: list[tuple[ReceiveResult, Any]], policies: Policies
) -> list[Admission | None]:
    """The review state each accepted return starts in (returns/admission.py)."""
    feedbacks = [feedback for _, feedback in pending]
    if not _has_returns(feedbacks):
        return [None] * len(feedbacks)
    return returns_admit(feedbacks, policies=policies, buyer_id=feedbacks[0].buyer_id)


def _cap(
    pending: list[tuple[ReceiveResult, Any]], admissions: list[Admission | None]
) -> None:
    """Last before the notifications: fit the returns under their caps (which
    locks the months' counters until the commit); a return over its cap is
    refused with the numbers."""
    if not any(admissions):
        return
    feedbacks = [feedback for _, feedback in pending]
    refused = set(returns_cap(feedbacks, admissions, buyer_id=feedbacks[0].buyer_id))
    for index, ((result, _), admission) in enumerate(
        zip(pending, admissions, strict=True)
    ):
        if admission is None:
            continue
        result.returns_remaining = admission.returns_remaining
        if index in refused:
            result.status = ReceiveStatus.REFUSED
            result.errors = [FieldError("", admission.refused)]


def _nothing_to_notify(feedbacks: list[Feedback], configs: Configs | None) -> bool:
    if len(feedbacks) != 1 or configs is None:
        return False
    feedback = feedbacks[0]
    return feedback.outcome != Feedback.Outcome.SUCCESS or not configs.get(
        (feedback.source_id, feedback.kind)
    )


_insert_feedback = Insert(Feedback)
_insert_with_notifications = _InsertWithNotifications()


def _store_one(result: ReceiveResult, feedback: Feedback) -> None:
    feedback.pk = None
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: the outer block stays usable
                _insert_feedback(feedback)
        else:
            _insert_feedback(feedback)  # commits on its own
    except IntegrityError:
        feedback.pk = None
        feedback.review_state = ""
        result.status = ReceiveStatus.ALREADY_RETURNED
        result.errors = [FieldError("event_id", ALREADY_RETURNED_REASON)]
        feedback.outcome = Feedback.Outcome.FAILURE
        feedback.outcome_reason = join_errors(result.errors)  # as `judge` words it
        _insert_feedback(feedback)


@dataclass(eq=False, slots=True)
class FeedbackRow:
    """A feedback before it is written, with the attributes `judge`,
    `feedback_variables` and COPY read (the model's attnames)."""

    delivery: DeliveryRow
    buyer: Buyer
    kind: str
    outcome_code: OutcomeCode | None
    reason: str
    revenue: Decimal | None
    quality_score: int | None
    occurred_at: datetime
    received_at: datetime
    custom: dict[str, Any]
    note: str
    channel: str
    api_key: ApiKey | None
    submitted_by: User | None
    outcome: str = Feedback.Outcome.SUCCESS
    outcome_reason: str = ""
    review_state: str = ""
    # New feedback is never retracted; COPY writes every column.
    retracted_at: datetime | None = None
    public_id: uuid.UUID = dataclass_field(default_factory=uuid.uuid4)
    id: int | None = None

    @property
    def pk(self) -> int | None:
        return self.id

    @property
    def lead(self) -> LeadRow | None:
        return self.delivery.lead

    @property
    def source(self) -> Source:
        return self.delivery.source

    @property
    def flow(self) -> Flow:
        return self.delivery.flow

    @property
    def delivery_id(self) -> int:
        return self.delivery.pk

    @property
    def lead_id(self) -> int:
        return self.delivery.lead_id

    @property
    def buyer_id(self) -> int:
        return int(self.buyer.pk)

    @property
    def source_id(self) -> int:
        return self.delivery.source_id

    @property
    def flow_id(self) -> int:
        return self.delivery.flow_id

    @property
    def outcome_code_id(self) -> int | None:
        return self.outcome_code.pk if self.outcome_code else None

    @property
    def api_key_id(self) -> int | None:
        return self.api_key.pk if self.api_key else None

    @property
    def submitted_by_id(self) -> int | None:
        return self.submitted_by.pk if self.submitted_by else None

    def as_feedback(self) -> Feedback:
        """The model instance, for the one-by-one fallback of `store_copy`."""
        return Feedback(
            **{f.attname: getattr(self, f.attname) for f in Feedback._meta.fields}
        )


def store_copy(
    pending: list[tuple[ReceiveResult, FeedbackRow]], *, policies: Policies
) -> None:
    """Insert the chunk's feedback and notifications, as `store_live` does."""
    rows = [row for _, row in pending]
    try:
        with transaction.atomic():
            admissions = _admit(pending, policies)
            _copy_feedback(rows)
            returns_record(rows, admissions, policies=policies)
            _cap(pending, admissions)
            suppression_add_for_feedback(rows)
    except IntegrityError:
        # A return of one of these deliveries was accepted elsewhere since we
        # looked: one by one, so only that row becomes "already returned".
        with transaction.atomic():
            admissions = _admit(pending, policies)
            for result, row in pending:
                row.id = None
                feedback = row.as_feedback()
                _store_one(result, feedback)
                row.id, row.outcome = feedback.pk, feedback.outcome
                row.outcome_reason = feedback.outcome_reason
                row.review_state = feedback.review_state
            returns_record(rows, admissions, policies=policies)
            _cap(pending, admissions)
            suppression_add_for_feedback(rows)
    _copy_notifications(rows)


def _copy_feedback(rows: list[FeedbackRow]) -> None:
    if connection.vendor != "postgresql":
        created = Feedback.objects.bulk_create([row.as_feedback() for row in rows])
        for row, feedback in zip(rows, created, strict=True):
            row.id = feedback.pk
        return
    objects_copy(Feedback, rows)


def _copy_notifications(rows: list[FeedbackRow]) -> None:
    """The notification rows `notifications_create` writes for these feedback
    (the same `notifications_build`), queued by the sweep, not here."""
    values = notifications_build(feedbacks=cast(list[Feedback], rows))
    if not values:
        return
    if connection.vendor != "postgresql":
        Notification.objects.bulk_create(Notification(**v) for v in values)
        return
    for v in values:
        v["config_id"] = v.pop("config").pk
    # Fields not set above take their model default: the same value for every
    # row, except a default that is a function (public_id), called per row.
    fields = [f for f in Notification._meta.concrete_fields if not f.primary_key]
    fixed = {
        f.attname: f.get_default()
        for f in fields
        if not (f.has_default() and callable(f.default))
    }
    copied = []
    for v in values:
        row = {**fixed, **v}
        copied.append(
            [row[f.attname] if f.attname in row else f.get_default() for f in fields]
        )
    rows_copy(Notification, copied, with_pk=False)
