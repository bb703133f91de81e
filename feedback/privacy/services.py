"""Erasing a person's data and applying the retention settings (DESIGN §12).

An erasure finds the person's leads by email, phone or lead id and removes
what identifies them everywhere Leadback keeps a copy: the lead's data and its
normalised email and phone, the bodies of the requests sent about its feedback
and the answers to them, the lines of batch files and CSV imports naming them,
stored API answers, webhook bodies and review notes. Ids, dates, prices,
outcomes and reasons stay, so every report counts the same before and after.
A receipt row keeps digests of what was asked, never the text.
"""

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from feedback.audit.services import audit_expire, audit_expired
from feedback.forwarding.models import BatchAttempt, BatchRun, NotificationAttempt
from feedback.imports.models import FeedbackImport, FeedbackImportChunk
from feedback.models import (
    ApiKey,
    DeliveryEvent,
    Feedback,
    FeedbackCorrection,
    IdempotencyKey,
    Lead,
)
from feedback.privacy.models import Erasure
from feedback.privacy.notices import (
    erasure_notices_create,
    erasure_notices_enqueue_on_commit,
)
from feedback.returns.models import Credit, ReturnTransition
from feedback.safetext import text_problem
from feedback.suppression.digests import (
    Digest,
    digest,
    email_value,
    lead_digests,
    phone_value,
    sha256_of,
)
from feedback.suppression.models import SuppressionList
from feedback.suppression.services import suppression_entries_add
from feedback.webhooks.models import WebhookAttempt, WebhookMessage

logger = logging.getLogger(__name__)

ERASED = "[erased]"
# Shorter values (a state code, an initial) are too common to hunt for in text
# that is not the lead's own: they would wipe other people's words.
MIN_TERM_CHARS = 3
MAX_IDENTIFIER_CHARS = 254
TERMS_PER_QUERY = 100


class ErasureInputError(ValueError):
    """The request cannot be carried out as asked; the message says why."""


@dataclass(frozen=True)
class ErasureRequest:
    """Who to erase, normalised: any of the three may be empty, not all."""

    email: str = ""
    phone: str = ""
    lead_id: str = ""

    def lead_filter(self) -> Q:
        query = Q(pk__in=[])
        if self.email:
            query |= Q(email_normalized=self.email)
        if self.phone:
            query |= Q(phone_normalized=self.phone)
        if self.lead_id:
            query |= Q(public_id=self.lead_id)
        return query


def erasure_request_clean(
    *, email: object = "", phone: object = "", lead_id: object = ""
) -> ErasureRequest:
    """Check and normalise what an erasure was asked for; ErasureInputError
    naming the problem otherwise."""
    given = {"email": email, "phone": phone, "lead_id": lead_id}
    for name, value in given.items():
        if value is None:
            given[name] = ""
        elif not isinstance(value, str):
            raise ErasureInputError(f"{name}: must be a string.")
        elif len(value) > MAX_IDENTIFIER_CHARS:
            raise ErasureInputError(
                f"{name}: at most {MAX_IDENTIFIER_CHARS} characters."
            )
        else:
            problem = text_problem(value)
            if problem:
                raise ErasureInputError(f"{name}: {problem}")
    raw_email = str(given["email"]).strip()
    raw_phone = str(given["phone"]).strip()
    raw_lead = str(given["lead_id"]).strip()
    if not (raw_email or raw_phone or raw_lead):
        raise ErasureInputError("Give an email, a phone or a lead id to erase.")
    normalised_email = ""
    if raw_email:
        normalised_email = email_value(raw_email)
        try:
            validate_email(normalised_email)
        except Exception:
            raise ErasureInputError("email: not a valid email address.") from None
    normalised_phone = ""
    if raw_phone:
        normalised_phone = phone_value(raw_phone)
        if len(normalised_phone) < 7:
            raise ErasureInputError("phone: needs at least 7 digits.")
    return ErasureRequest(
        email=normalised_email, phone=normalised_phone, lead_id=raw_lead
    )


# What identifies a person in text -------------------------------------------------


def _values(data: object) -> Iterable[str]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _values(value)
    elif isinstance(data, list):
        for value in data:
            yield from _values(value)
    elif isinstance(data, str):
        yield data
    elif isinstance(data, int) and not isinstance(data, bool) and data >= 1_000_000:
        yield str(data)  # a phone number sent as a number


def lead_terms(
    leads: Sequence[Lead], request: ErasureRequest | None = None
) -> set[str]:
    """Every piece of text that identifies these leads' person, in the forms it
    is written in elsewhere: as sent, normalised, JSON-escaped and URL-encoded."""
    terms: set[str] = set()
    for lead in leads:
        for value in _values(lead.data):
            terms.add(value.strip())
        terms.update({lead.email_normalized, lead.phone_normalized})
        phone = phone_value(lead.data.get("phone_1") if lead.data else "")
        terms.add(phone)
    if request is not None:
        terms.update({request.email, request.phone})
    # A ten-digit number is also written with its trunk prefix (+1 512 …).
    terms.update({"1" + t for t in terms if len(t) == 10 and t.isdigit()})
    variants: set[str] = set()
    for term in terms:
        if len(term) < MIN_TERM_CHARS:
            continue
        variants.add(term)
        variants.add(json.dumps(term)[1:-1])
        variants.add(quote(term, safe=""))
        variants.add(quote_plus(term, safe=""))
    return {v for v in variants if len(v) >= MIN_TERM_CHARS}


@dataclass
class Scrubber:
    """Replaces the terms, as whole words and in any case, with `[erased]`."""

    terms: set[str]
    pattern: re.Pattern[str] | None = field(init=False)

    def __post_init__(self) -> None:
        ordered = sorted(self.terms, key=len, reverse=True)
        self.pattern = (
            re.compile(
                r"(?<![\w])(?:"
                + "|".join(re.escape(t) for t in ordered)
                + r")(?![\w])",
                re.IGNORECASE,
            )
            if ordered
            else None
        )

    def text(self, value: str) -> str:
        if self.pattern is None or not value:
            return value
        return self.pattern.sub(ERASED, value)

    def data(self, value: Any) -> Any:
        """A JSON value with the terms replaced in every string, keys included."""
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def blob(self, value: bytes | memoryview | None) -> bytes | None:
        if value is None:
            return None
        raw = bytes(value)
        text = raw.decode("utf-8", "surrogateescape")
        cleaned = self.text(text)
        return raw if cleaned == text else cleaned.encode("utf-8", "surrogateescape")

    def containing(self, model: type[Any], *fields: str) -> list[int]:
        """The pks of `model`'s rows where a field contains a term: the
        candidates to scrub. A few terms per query: SQLite parses a long OR
        chain as deep as it is long, and refuses one over 1,000."""
        pks: set[int] = set()
        terms = sorted(self.terms)
        for start in range(0, len(terms), TERMS_PER_QUERY):
            query = Q(pk__in=[])
            for term in terms[start : start + TERMS_PER_QUERY]:
                for name in fields:
                    query |= Q(**{f"{name}__icontains": term})
            pks.update(model.objects.filter(query).values_list("pk", flat=True))
        return sorted(pks)


def _without_query(url: str) -> str:
    """The URL without its query and fragment: a query transport's parameters
    carry the lead's fields."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# Removing -------------------------------------------------------------------------


@dataclass
class Removal:
    """What a removal changed, by kind, and the evidence files to delete once
    the transaction has committed."""

    counts: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)


def _scrub_rows(
    queryset: QuerySet[Any],
    scrubber: Scrubber,
    *,
    text_fields: Sequence[str] = (),
    json_fields: Sequence[str] = (),
    blob_fields: Sequence[str] = (),
) -> int:
    """Scrub the fields of every row of `queryset`; how many rows changed."""
    changed_rows = []
    names = [*text_fields, *json_fields, *blob_fields]
    for row in queryset.only("pk", *names).iterator(chunk_size=500):
        changed = False
        for name in text_fields:
            before = getattr(row, name)
            after = scrubber.text(before)
            if after != before:
                setattr(row, name, after)
                changed = True
        for name in json_fields:
            before = getattr(row, name)
            after = scrubber.data(before)
            if after != before:
                setattr(row, name, after)
                changed = True
        for name in blob_fields:
            blob = getattr(row, name)
            cleaned = scrubber.blob(blob)
            if blob is not None and cleaned != bytes(blob):
                setattr(row, name, cleaned)
                changed = True
        if changed:
            changed_rows.append(row)
    if changed_rows:
        queryset.model.objects.bulk_update(changed_rows, names, batch_size=500)
    return len(changed_rows)


def _attempt_bodies_clear(queryset: QuerySet[NotificationAttempt]) -> int:
    rows = list(queryset.only("pk", "request_url"))
    for row in rows:
        row.request_url = _without_query(row.request_url)
        row.request_body = ""
        row.response_body = ""
        row.request_headers = {}
        row.response_headers = {}
    NotificationAttempt.objects.bulk_update(
        rows,
        [
            "request_url",
            "request_body",
            "response_body",
            "request_headers",
            "response_headers",
        ],
        batch_size=500,
    )
    return len(rows)


def leads_personal_data_remove(
    *, leads: Sequence[Lead], scrubber: Scrubber, everywhere: bool = True
) -> Removal:
    """Remove these leads' personal data everywhere it is kept (see the
    module's docstring). Runs inside the caller's transaction.

    `everywhere=False` (retention) leaves out the searches of tables not tied
    to a lead: webhook messages carry no lead fields, their answers go with
    the attempt bodies' retention, and stored API answers within a day."""
    removal = Removal()
    if not leads:
        return removal
    counts = removal.counts
    lead_pks = [lead.pk for lead in leads]
    counts["leads"] = Lead.objects.filter(pk__in=lead_pks).update(
        data={}, email_normalized="", phone_normalized=""
    )
    feedback = Feedback.objects.filter(lead_id__in=lead_pks)
    counts["feedback"] = _scrub_rows(
        feedback,
        scrubber,
        text_fields=["note", "outcome_reason"],
        json_fields=["custom"],
    )
    attempts = NotificationAttempt.objects.filter(
        notification__feedback__lead_id__in=lead_pks
    )
    counts["notification_attempts"] = _attempt_bodies_clear(attempts)
    counts["notification_attempts"] += _scrub_rows(
        NotificationAttempt.objects.filter(
            notification__feedback__lead_id__in=lead_pks
        ),
        scrubber,
        text_fields=["reason"],
    )
    runs = BatchRun.objects.filter(
        notifications__feedback__lead_id__in=lead_pks
    ).distinct()
    run_pks = list(runs.values_list("pk", flat=True))
    counts["batch_files"] = _scrub_rows(
        BatchRun.objects.filter(pk__in=run_pks),
        scrubber,
        text_fields=["reason"],
        blob_fields=["content"],
    )
    counts["batch_attempts"] = _scrub_rows(
        BatchAttempt.objects.filter(run_id__in=run_pks),
        scrubber,
        text_fields=["reason", "destination"],
    )
    buyers = set(
        Feedback.objects.filter(lead_id__in=lead_pks).values_list("buyer_id", flat=True)
    ) | set(
        Lead.objects.filter(pk__in=lead_pks).values_list(
            "deliveries__buyer_id", flat=True
        )
    )
    since = min(lead.received_at for lead in leads) - timedelta(days=1)
    imports = FeedbackImport.objects.filter(buyer_id__in=buyers, created_at__gte=since)
    counts["import_files"] = _scrub_rows(
        imports.exclude(content=b""),
        scrubber,
        text_fields=["error", "filename"],
        blob_fields=["content"],
    )
    counts["import_results"] = _scrub_rows(
        FeedbackImportChunk.objects.filter(feedback_import__in=imports),
        scrubber,
        json_fields=["results"],
    )
    steps = ReturnTransition.objects.filter(feedback__lead_id__in=lead_pks)
    removal.files = list(steps.exclude(evidence="").values_list("evidence", flat=True))
    counts["evidence_files"] = steps.exclude(evidence="").update(
        evidence="", evidence_name=""
    )
    counts["review_notes"] = _scrub_rows(steps, scrubber, text_fields=["note"])
    counts["credits"] = _scrub_rows(
        Credit.objects.filter(feedback__lead_id__in=lead_pks),
        scrubber,
        text_fields=["void_reason"],
    )
    counts["corrections"] = _scrub_rows(
        FeedbackCorrection.objects.filter(feedback__lead_id__in=lead_pks),
        scrubber,
        text_fields=["reason"],
    )
    if scrubber.terms and everywhere:
        counts["webhook_messages"] = _scrub_rows(
            WebhookMessage.objects.filter(
                pk__in=scrubber.containing(WebhookMessage, "body", "reason")
            ),
            scrubber,
            text_fields=["body", "reason"],
        )
        counts["webhook_attempts"] = _scrub_rows(
            WebhookAttempt.objects.filter(
                pk__in=scrubber.containing(WebhookAttempt, "response_body", "reason")
            ),
            scrubber,
            text_fields=["response_body", "reason"],
        )
        counts["stored_answers"] = _stored_answers_delete(scrubber, since=since)
    removal.counts = +counts  # drop the kinds with nothing changed
    return removal


def _stored_answers_delete(scrubber: Scrubber, *, since: datetime) -> int:
    """Delete the Idempotency-Key answers that name the person (recording a
    delivery answers with the lead): a retry then runs again instead of
    replaying them, and finds its event already recorded."""
    doomed = []
    rows = IdempotencyKey.objects.filter(created_at__gte=since).only(
        "pk", "response_content", "response_body"
    )
    for row in rows.iterator(chunk_size=500):
        text = bytes(row.response_content or b"").decode("utf-8", "replace")
        if row.response_body is not None:
            text += json.dumps(row.response_body)
        if scrubber.text(text) != text:
            doomed.append(row.pk)
    return IdempotencyKey.objects.filter(pk__in=doomed).delete()[0]


def _evidence_delete(names: Sequence[str]) -> None:
    storage = ReturnTransition._meta.get_field("evidence").storage  # type: ignore[attr-defined]
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("an erased evidence file could not be deleted")


# Erasure --------------------------------------------------------------------------


def _request_digests(request: ErasureRequest, leads: Sequence[Lead]) -> list[Digest]:
    found: dict[tuple[str, str], Digest] = {}
    for lead in leads:
        for item in lead_digests(lead.data):
            found[(item.field, item.sha256)] = item
    if request.email:
        item = digest("email", request.email)
        found[(item.field, item.sha256)] = item
    if request.phone:
        item = digest("phone", request.phone)
        found[(item.field, item.sha256)] = item
    return list(found.values())


def person_erase(
    *,
    request: ErasureRequest,
    via: str,
    user: User | None = None,
    api_key: ApiKey | None = None,
    requested_by: str = "",
    suppression_list: str = "",
) -> Erasure:
    """Erase the person's data (DESIGN §12) and write the receipt; add their
    digests to `suppression_list` when one is named (ErasureInputError if it
    does not exist). Sources configured for it get an erasure notice."""
    chosen = None
    if suppression_list:
        chosen = SuppressionList.objects.filter(slug=suppression_list).first()
        if chosen is None:
            raise ErasureInputError(
                f"suppression_list: no list is called {suppression_list!r}."
            )
    with transaction.atomic():
        leads = list(
            Lead.objects.select_for_update()
            .filter(request.lead_filter())
            .order_by("pk")
        )
        digests = _request_digests(request, leads)
        events: dict[int, list[str]] = {}
        for lead_pk, event_id in DeliveryEvent.objects.filter(
            lead_id__in=[lead.pk for lead in leads]
        ).values_list("lead_id", "event_id"):
            events.setdefault(lead_pk, []).append(event_id)
        scrubber = Scrubber(lead_terms(leads, request))
        removal = leads_personal_data_remove(leads=leads, scrubber=scrubber)
        if chosen is not None and digests:
            removal.counts["suppression_entries"] = suppression_entries_add(
                suppression_list=chosen, digests=digests
            )
        erasure = Erasure.objects.create(
            via=via,
            email_sha256=sha256_of(request.email) if request.email else "",
            phone_sha256=sha256_of(request.phone) if request.phone else "",
            lead_id_sha256=sha256_of(request.lead_id) if request.lead_id else "",
            leads=len(leads),
            counts=dict(sorted(removal.counts.items())),
            suppression_list=chosen.slug if chosen is not None else "",
            user=user,
            api_key=api_key,
            requested_by=requested_by[:200],
        )
        notices = erasure_notices_create(erasure=erasure, leads=leads, events=events)
        if notices:
            erasure.notices = len(notices)
            erasure.save(update_fields=["notices"])
            erasure_notices_enqueue_on_commit()
        transaction.on_commit(partial(_evidence_delete, removal.files))
    logger.info(
        "erasure %s: %d leads, %d notices", erasure.public_id, len(leads), len(notices)
    )
    return erasure


# Retention ------------------------------------------------------------------------

RETENTION_KINDS = (
    "attempt_bodies",
    "import_files",
    "batch_files",
    "lead_data",
    "audit_entries",
)


def _cutoff(setting: str, now: datetime) -> datetime | None:
    days = getattr(settings, setting)
    return None if not days else now - timedelta(days=days)


def _expired_attempts(cutoff: datetime) -> QuerySet[NotificationAttempt]:
    return NotificationAttempt.objects.filter(started_at__lt=cutoff).filter(
        ~Q(request_body="")
        | ~Q(response_body="")
        | ~Q(request_headers={})
        | ~Q(response_headers={})
        | Q(request_url__contains="?")
    )


def _expired_webhook_attempts(cutoff: datetime) -> QuerySet[WebhookAttempt]:
    return WebhookAttempt.objects.filter(started_at__lt=cutoff).filter(
        ~Q(response_body="") | ~Q(response_headers={})
    )


def _expired_imports(cutoff: datetime) -> QuerySet[FeedbackImport]:
    return FeedbackImport.objects.filter(
        status__in=[FeedbackImport.Status.DONE, FeedbackImport.Status.FAILED],
        finished_at__lt=cutoff,
    ).exclude(content=b"")


def _expired_batch_files(cutoff: datetime) -> QuerySet[BatchRun]:
    return BatchRun.objects.exclude(status__in=BatchRun.OPEN_STATUSES).filter(
        updated_at__lt=cutoff, content__isnull=False
    )


def _expired_leads(cutoff: datetime) -> QuerySet[Lead]:
    # The last delivery, or the lead's arrival when it was never delivered.
    return (
        Lead.objects.annotate(last_delivery=Max("deliveries__delivered_at"))
        .filter(
            Q(last_delivery__lt=cutoff)
            | Q(last_delivery__isnull=True, received_at__lt=cutoff)
        )
        .exclude(data={}, email_normalized="", phone_normalized="")
    )


def retention_due(*, now: datetime | None = None) -> dict[str, int]:
    """How many rows of each kind the retention settings would clear now."""
    now = now or timezone.now()
    counts = dict.fromkeys(RETENTION_KINDS, 0)
    if cutoff := _cutoff("LEADBACK_RETAIN_ATTEMPT_BODIES_DAYS", now):
        counts["attempt_bodies"] = (
            _expired_attempts(cutoff).count()
            + _expired_webhook_attempts(cutoff).count()
        )
    if cutoff := _cutoff("LEADBACK_RETAIN_IMPORT_FILES_DAYS", now):
        counts["import_files"] = _expired_imports(cutoff).count()
    if cutoff := _cutoff("LEADBACK_RETAIN_BATCH_FILES_DAYS", now):
        counts["batch_files"] = _expired_batch_files(cutoff).count()
    if cutoff := _cutoff("LEADBACK_RETAIN_LEAD_DATA_DAYS", now):
        counts["lead_data"] = _expired_leads(cutoff).count()
    counts["audit_entries"] = audit_expired(now=now).count()
    return counts


RETENTION_BATCH = 200


def retention_apply(*, now: datetime | None = None) -> dict[str, int]:
    """Clear what the retention settings no longer keep: attempt bodies,
    stored import and batch files, and the personal data of leads last
    delivered longer ago than allowed. Counts per kind."""
    now = now or timezone.now()
    counts = dict.fromkeys(RETENTION_KINDS, 0)
    if cutoff := _cutoff("LEADBACK_RETAIN_ATTEMPT_BODIES_DAYS", now):
        while ids := list(
            _expired_attempts(cutoff).values_list("pk", flat=True)[:RETENTION_BATCH]
        ):
            with transaction.atomic():
                counts["attempt_bodies"] += _attempt_bodies_clear(
                    NotificationAttempt.objects.filter(pk__in=ids)
                )
        with transaction.atomic():
            counts["attempt_bodies"] += _expired_webhook_attempts(cutoff).update(
                response_body="", response_headers={}
            )
    if cutoff := _cutoff("LEADBACK_RETAIN_IMPORT_FILES_DAYS", now):
        with transaction.atomic():
            counts["import_files"] = _expired_imports(cutoff).update(content=b"")
    if cutoff := _cutoff("LEADBACK_RETAIN_BATCH_FILES_DAYS", now):
        with transaction.atomic():
            counts["batch_files"] = _expired_batch_files(cutoff).update(content=None)
    if cutoff := _cutoff("LEADBACK_RETAIN_LEAD_DATA_DAYS", now):
        while leads := list(_expired_leads(cutoff).order_by("pk")[:RETENTION_BATCH]):
            with transaction.atomic():
                removal = leads_personal_data_remove(
                    leads=leads, scrubber=Scrubber(lead_terms(leads)), everywhere=False
                )
                transaction.on_commit(partial(_evidence_delete, removal.files))
            counts["lead_data"] += len(leads)
    counts["audit_entries"] = audit_expire(now=now)
    return counts
