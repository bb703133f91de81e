"""The intake pipeline: parse, look up, judge, store (DESIGN §4.4).

One path for every channel. It is batch-shaped: one feedback is a batch of
one. What differs by channel is the strategy, a lookup and a store suited to
the size of what arrives: `LIVE` for the API, the LeadConduit URL, the portal
and the admin; `FILE` for CSV chunks, thousands of rows inside the chunk's
transaction.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.contrib.auth.models import User
from django.utils import timezone

from feedback.intake.judge import judge
from feedback.intake.lookup import Known, known_many, known_one, known_rows
from feedback.intake.parse import (
    FieldError,
    Parsed,
    ReceiveResult,
    ReceiveStatus,
    lookup_key,
    not_found,
    parse_item,
)
from feedback.intake.store import FeedbackRow, store_copy, store_live
from feedback.metrics import feedback_counted
from feedback.models import ApiKey, Buyer, Feedback, OutcomeCode

__all__ = ["FieldError", "ReceiveResult", "ReceiveStatus"]


@dataclass(frozen=True)
class Strategy:
    """How a channel reads what judging needs, builds rows and writes them."""

    lookup: Callable[[Buyer, list[Parsed]], Known]
    row: Callable[..., Any]
    store: Callable[[list[tuple[ReceiveResult, Any]], Known], None]


def _live_lookup(buyer: Buyer, parsed: list[Parsed]) -> Known:
    return known_one(buyer, parsed) or known_many(buyer, parsed)


def _live_row(*, delivery: Any, buyer: Buyer, **fields: Any) -> Feedback:
    return Feedback(
        delivery=delivery,
        lead=delivery.lead,
        buyer=delivery.buyer,
        source=delivery.source,
        flow=delivery.flow,
        outcome=Feedback.Outcome.SUCCESS,
        **fields,
    )


def _live_store(pending: list[tuple[ReceiveResult, Any]], known: Known) -> None:
    store_live(pending, configs=known.configs, policies=known.policies)


def _file_store(pending: list[tuple[ReceiveResult, Any]], known: Known) -> None:
    store_copy(pending, policies=known.policies)


LIVE = Strategy(lookup=_live_lookup, row=_live_row, store=_live_store)
FILE = Strategy(lookup=known_rows, row=FeedbackRow, store=_file_store)


def feedback_receive(
    *,
    buyer: Buyer,
    data: Mapping[str, Any],
    channel: str,
    api_key: ApiKey | None = None,
    user: User | None = None,
) -> ReceiveResult:
    """Validate and record one feedback from any channel (DESIGN §4.4).

    `buyer` is the caller's scope: another buyer's delivery is NOT_FOUND.
    """
    return feedback_receive_many(
        buyer=buyer, items=[data], channel=channel, api_key=api_key, user=user
    )[0]


def feedback_receive_many(
    *,
    buyer: Buyer,
    items: Sequence[Mapping[str, Any]],
    channel: str,
    api_key: ApiKey | None = None,
    user: User | None = None,
    strategy: Strategy = LIVE,
) -> list[ReceiveResult]:
    """Validate and record many feedbacks; each item succeeds or fails on its own.

    The database work is a fixed number of queries whatever the number of items:
    deliveries, policies and earlier returns are read in bulk, rows written in
    bulk. With `FILE` it runs inside the caller's transaction and leaves the
    notifications to the sweep, so a large file is forwarded at the sweep's
    pace, behind the real-time feedback, not ahead of it.
    """
    now = timezone.now()
    # Only items that name an outcome code need the vocabulary.
    codes: dict[str, OutcomeCode] = {}
    if any(isinstance(i, Mapping) and i.get("outcome_code") for i in items):
        codes = {c.code: c for c in OutcomeCode.objects.filter(is_active=True)}
    parsed = [parse_item(item, codes=codes, now=now) for item in items]
    known = strategy.lookup(buyer, parsed)

    results: list[ReceiveResult] = []
    pending: list[tuple[ReceiveResult, Any]] = []
    for item in parsed:
        if item.fatal:
            results.append(ReceiveResult(ReceiveStatus.INVALID, errors=item.fatal))
            continue
        delivery = known.deliveries.get(lookup_key(item))
        if delivery is None:
            results.append(not_found(item))
            continue
        feedback = strategy.row(
            delivery=delivery,
            buyer=buyer,
            kind=item.kind,
            outcome_code=item.outcome_code,
            reason=item.reason,
            revenue=item.revenue,
            quality_score=item.quality_score,
            occurred_at=item.occurred_at or now,
            received_at=now,
            custom=item.custom,
            note=item.note,
            channel=channel,
            api_key=api_key,
            submitted_by=user,
        )
        result = judge(
            item,
            cast(Feedback, feedback),
            policies=known.policies,
            returned=known.returned,
            now=now,
        )
        results.append(result)
        pending.append((result, feedback))
    if pending:
        strategy.store(pending, known)
    feedback_counted(channel, [str(r.status) for r in results])
    return results
