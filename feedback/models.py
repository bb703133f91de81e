import secrets
import uuid

from django.conf import settings
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    validate_slug,
)
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sources.models import FeedbackConfig, Kind, Source

EVENT_ID_PATTERN = r"^[0-9a-f]{24}$"
validate_event_id = RegexValidator(
    EVENT_ID_PATTERN, "An event id is 24 lowercase hexadecimal characters."
)


class Flow(models.Model):
    """The seller's routing pipeline a lead went through. Leadback does not route."""

    slug = models.SlugField(max_length=100, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Buyer(models.Model):
    """An organisation that receives leads and reports feedback about them."""

    slug = models.SlugField(max_length=100, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(
        default=True, help_text="Inactive buyers cannot log in or use their API keys."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="BuyerMembership",
        related_name="buyers",
        blank=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BuyerPolicy(models.Model):
    """What feedback a buyer may send, per kind, optionally narrowed to one flow.

    A flow-specific row wins over the buyer-wide row (flow empty). With no row at
    all, the kind is allowed with the default return age.
    """

    DEFAULT_MAX_AGE_DAYS = 90

    buyer = models.ForeignKey(Buyer, on_delete=models.CASCADE, related_name="policies")
    flow = models.ForeignKey(
        Flow,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Leave empty for the buyer-wide policy.",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    max_age_days = models.PositiveIntegerField(
        "maximum return age (days)",
        default=DEFAULT_MAX_AGE_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Returns are refused this many days after delivery.",
    )
    rules = models.JSONField(
        null=True,
        blank=True,
        help_text="Optional rule set that feedback must pass (advanced mode).",
    )

    class Meta:
        verbose_name = "buyer policy"
        verbose_name_plural = "buyer policies"
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "kind"],
                condition=Q(flow__isnull=True),
                name="buyer_policy_one_default_per_kind",
            ),
            models.UniqueConstraint(
                fields=["buyer", "flow", "kind"],
                condition=Q(flow__isnull=False),
                name="buyer_policy_one_per_flow_and_kind",
            ),
        ]

    def __str__(self) -> str:
        scope = f" on {self.flow}" if self.flow_id else ""
        state = "enabled" if self.enabled else "disabled"
        return f"{self.get_kind_display()}{scope}: {state}"


class BuyerMembership(models.Model):
    """A portal user working for a buyer. A user may belong to several buyers."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    buyer = models.ForeignKey(
        Buyer, on_delete=models.CASCADE, related_name="memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "buyer"], name="buyer_membership_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.buyer}"


class ApiKey(models.Model):
    """A credential for the API. Only a SHA-256 hash of the key is stored."""

    class Scope(models.TextChoices):
        BUYER = "buyer", "Buyer (sends feedback, reads its deliveries)"
        INTEGRATION = "integration", "Integration (records delivery events)"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=20, choices=Scope.choices)
    buyer = models.ForeignKey(
        Buyer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
    )
    prefix = models.CharField(
        max_length=16,
        db_index=True,
        editable=False,
        help_text="Visible start of the key.",
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=(Q(scope="buyer") & Q(buyer__isnull=False))
                | (Q(scope="integration") & Q(buyer__isnull=True)),
                name="api_key_scope_matches_buyer",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Lead(models.Model):
    """A person's record as the seller received it from a source."""

    public_id = models.CharField(
        "lead id",
        max_length=64,
        unique=True,
        help_text="The seller's lead id; links the deliveries of one lead.",
    )
    # Indexed by the (source, received_at) index in Meta.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="leads", db_index=False
    )
    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="leads")
    data = models.JSONField(default=dict, blank=True)
    # Normalised copies of data.email / data.phone_1 so search can use an index.
    email_normalized = models.CharField(max_length=254, blank=True, db_index=True)
    phone_normalized = models.CharField(max_length=20, blank=True, db_index=True)
    received_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["source", "received_at"])]

    def __str__(self) -> str:
        return self.public_id

    @property
    def display_name(self) -> str:
        first = str(self.data.get("first_name") or "")
        last = str(self.data.get("last_name") or "")
        return f"{first} {last}".strip()


class DeliveryEvent(models.Model):
    """One delivery of a lead to a buyer. Feedback quotes its event id."""

    event_id = models.CharField(
        max_length=24, unique=True, validators=[validate_event_id]
    )
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="deliveries")
    # buyer, source and flow are indexed by the Meta indexes they lead.
    buyer = models.ForeignKey(
        Buyer, on_delete=models.PROTECT, related_name="deliveries", db_index=False
    )
    # Copied from the lead so scoping and reports group without joining leads.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="deliveries", db_index=False
    )
    flow = models.ForeignKey(
        Flow, on_delete=models.PROTECT, related_name="deliveries", db_index=False
    )
    step = models.CharField("step name", max_length=200, blank=True)
    reference = models.CharField(
        max_length=200, blank=True, help_text="The buyer's own id for the lead."
    )
    price = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
    )
    delivered_at = models.DateTimeField(default=timezone.now)
    # SHA-256 of the recorded payload: a repeat with the same event id and another
    # payload is a conflict, the same payload is a harmless retry.
    payload_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "delivery event"
        constraints = [
            models.CheckConstraint(
                condition=Q(event_id__regex=EVENT_ID_PATTERN),
                name="delivery_event_id_format",
            ),
            models.CheckConstraint(
                condition=Q(price__gte=0), name="delivery_price_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "-delivered_at"]),
            models.Index(fields=["buyer", "reference"]),
            models.Index(fields=["source", "delivered_at"]),
            models.Index(fields=["flow", "delivered_at"]),
            models.Index(fields=["delivered_at"]),
        ]

    def __str__(self) -> str:
        return self.event_id


class OutcomeCode(models.Model):
    """A disposition from the managed vocabulary. Each code implies a kind."""

    code = models.SlugField(max_length=50, unique=True, validators=[validate_slug])
    label = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "code"]

    def __str__(self) -> str:
        return self.label


class Feedback(models.Model):
    """What a buyer reported about one delivery ("feedback received" event).

    Refused feedback is stored too (outcome failure): it is reported on.
    """

    class Channel(models.TextChoices):
        API = "api", "JSON API"
        LC_COMPAT = "lc-compat", "LeadConduit-compatible URL"
        PORTAL = "portal", "Portal"
        CSV = "csv", "CSV import"
        ADMIN = "admin", "Admin"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Accepted"
        FAILURE = "failure", "Refused"
        ERROR = "error", "Error"

    public_id = models.UUIDField(
        "feedback id", default=uuid.uuid4, unique=True, editable=False
    )
    # delivery, buyer and source are indexed by the Meta indexes they lead: a
    # single-column index beside each would only slow every insert down.
    delivery = models.ForeignKey(
        DeliveryEvent, on_delete=models.PROTECT, related_name="feedback", db_index=False
    )
    # Copied from the delivery so lists and reports need no joins.
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="feedback")
    buyer = models.ForeignKey(
        Buyer, on_delete=models.PROTECT, related_name="feedback", db_index=False
    )
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="feedback", db_index=False
    )
    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="feedback")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    outcome_code = models.ForeignKey(
        OutcomeCode,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="feedback",
    )
    reason = models.CharField(max_length=255, blank=True)
    revenue = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    quality_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    occurred_at = models.DateTimeField(
        default=timezone.now, help_text="When it happened at the buyer."
    )
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    custom = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    outcome_reason = models.CharField(
        max_length=500, blank=True, help_text="Why the feedback was refused."
    )
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name_plural = "feedback"
        constraints = [
            # A delivery can be returned successfully once; the database holds the
            # line when two returns race.
            models.UniqueConstraint(
                fields=["delivery"],
                condition=Q(kind="return", outcome="success"),
                name="feedback_one_successful_return",
            ),
            models.CheckConstraint(
                condition=Q(revenue__isnull=True) | Q(revenue__gte=0),
                name="feedback_revenue_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(quality_score__isnull=True)
                | Q(quality_score__gte=1, quality_score__lte=5),
                name="feedback_quality_score_1_to_5",
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "-received_at"]),
            models.Index(fields=["delivery", "kind"]),
            models.Index(fields=["source", "received_at"]),
            models.Index(fields=["received_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.delivery_id} ({self.outcome})"


def new_notification_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


class Notification(models.Model):
    """One feedback forwarded under one source config: a "feedback sent" event.

    The row is the source of truth for delivery (DESIGN §5.4): its status and
    `next_attempt_at` decide what is sent when; a queued message only says
    "look at row N with lease L". `public_id` is sent as `webhook-id` on every
    try so a source can drop duplicates of an at-least-once delivery.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (refused by the source)"
        DEAD = "dead", "Dead (retries exhausted)"
        SKIPPED = "skipped", "Skipped (criteria)"
        BATCHED = "batched", "Batched"

    # Rows the engine still has to send; the rest are final.
    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    public_id = models.CharField(
        "notification id",
        max_length=40,
        unique=True,
        default=new_notification_id,
        editable=False,
    )
    # feedback and source are indexed by the constraint and index they lead.
    feedback = models.ForeignKey(
        Feedback, on_delete=models.PROTECT, related_name="notifications", db_index=False
    )
    # Kept when a config is deleted: the history of what was sent stays.
    config = models.ForeignKey(
        FeedbackConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notifications",
    )
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="notifications", db_index=False
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The delivery's delivered_at, copied when the row is written (it never
    # changes): reports counted by delivery date filter notifications on it
    # without joining feedback and deliveries.
    lead_delivered_at = models.DateTimeField(editable=False)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    reference = models.CharField(
        max_length=255, blank=True, help_text="The source's id for what it received."
    )
    attempt_count = models.PositiveSmallIntegerField(default=0)
    # Tries since the schedule last started (a resend starts it again).
    schedule_tries = models.PositiveSmallIntegerField(default=0, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Who may work on the row until when: set when a message is queued for it
    # and again when a worker starts sending. An expired lease makes the row
    # due again, which is how lost messages and killed workers are recovered.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A batched notification's file: set once, in the UPDATE that builds a run,
    # so a notification can only ever be in one file.
    batch_run = models.ForeignKey(
        "BatchRun",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["feedback", "config"], name="notification_one_per_config"
            ),
        ]
        indexes = [
            # The sweeper's query: open rows by due time.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="notification_due_idx",
            ),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["source", "created_at"]),
            # The batch scheduler's query: a config's rows not yet in a file.
            models.Index(
                fields=["config", "created_at"],
                condition=Q(status="batched", batch_run__isnull=True),
                name="notification_unbatched_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class DeliveryAttempt(models.Model):
    """One try at sending a notification: what went out, what came back."""

    MAX_BODY_CHARS = 20_000

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    request_method = models.CharField(max_length=10)
    request_url = models.CharField(max_length=2000)
    request_headers = models.JSONField(default=dict, blank=True)
    request_body = models.TextField(blank=True, help_text="Secrets redacted.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True, help_text="At most 20 KB.")
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=1000, blank=True)
    error_class = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["notification", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "number"], name="attempt_number_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} #{self.number}: {self.outcome}"


class IdempotencyKey(models.Model):
    """A POST's Idempotency-Key and the response it got, replayed on a retry.

    Scoped to the caller's owner (a buyer, an integration key or a user) so two
    buyers can pick the same key without seeing each other's answers.
    """

    owner = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "idempotency key"
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "key"], name="idempotency_key_unique_per_owner"
            )
        ]

    def __str__(self) -> str:
        return f"{self.owner}:{self.key}"


class DeadNotification(Notification):
    """A notification whose retries ran out, for the admin's dead-letter view.

    A proxy: the same rows, shown apart so admins see what needs them.
    """

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


def new_batch_run_id() -> str:
    return f"run_{secrets.token_hex(12)}"


class BatchRun(models.Model):
    """One file of a batch config's notifications for one period (DESIGN §5.6).

    The notifications are tied to the run when it is created and the file is
    built once and stored, so every try (a retry, a resend, a worker that picks
    up after another was killed) sends the very same file.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        EMPTY = "empty", "Empty (nothing to send)"
        FAILED = "failed", "Failed (refused)"
        DEAD = "dead", "Dead (retries exhausted)"

    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    public_id = models.CharField(
        "run id", max_length=40, unique=True, default=new_batch_run_id, editable=False
    )
    # Kept when a config is deleted (or dropped by an import): the record of
    # what was sent stays, and an unsent run fails with the reason.
    config = models.ForeignKey(
        FeedbackConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="batch_runs",
    )
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="batch_runs"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=500, blank=True)
    # The file as built: what every try sends. Null until built.
    content = models.BinaryField(null=True, blank=True, editable=False)
    sha256 = models.CharField(max_length=64, blank=True)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    schedule_tries = models.PositiveSmallIntegerField(default=0, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_end", "-pk"]
        constraints = [
            # A period is run once: two schedulers racing create one run.
            models.UniqueConstraint(
                fields=["config", "period_end"], name="batchrun_one_per_period"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="batchrun_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class BatchAttempt(models.Model):
    """One try at sending a batch run's file."""

    run = models.ForeignKey(BatchRun, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    destination = models.CharField(max_length=1000, blank=True)
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=1000, blank=True)
    error_class = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "number"], name="batchattempt_number_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.number}: {self.outcome}"


def new_import_id() -> str:
    return f"imp_{secrets.token_hex(12)}"


class FeedbackImport(models.Model):
    """A CSV file of feedback uploaded by a buyer, processed in chunks by a worker.

    The file is kept in the row itself (`content`): every worker reaches the
    database, not necessarily a shared disk, and the file and the import commit
    together. A buyer's file is imported once: the same bytes uploaded again
    answer with this import instead of writing the feedback twice.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    OPEN_STATUSES = (Status.QUEUED, Status.PROCESSING)

    public_id = models.CharField(
        "import id",
        max_length=40,
        unique=True,
        default=new_import_id,
        editable=False,
    )
    buyer = models.ForeignKey(
        Buyer, on_delete=models.CASCADE, related_name="feedback_imports"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    channel = models.CharField(
        max_length=20, choices=Feedback.Channel.choices, default=Feedback.Channel.CSV
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    filename = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64, editable=False)
    file_size = models.PositiveIntegerField(default=0, editable=False)
    # Never loaded by lists (selectors defer it); only the worker and the
    # refused-rows report read it.
    content = models.BinaryField(editable=False)
    total_rows = models.PositiveIntegerField(default=0)
    # Fixed at upload: a resumed import must cut the file into the same chunks
    # it recorded before, whatever the setting says by then.
    chunk_size = models.PositiveIntegerField(default=2000, editable=False)
    processed_rows = models.PositiveIntegerField(default=0)
    succeeded_rows = models.PositiveIntegerField(default=0)
    refused_rows = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Who may process the import until when. A worker killed mid-import leaves a
    # lease that runs out; the sweeper then queues the import again.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "feedback import"
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "file_sha256"], name="feedback_import_once_per_file"
            ),
            models.CheckConstraint(
                condition=Q(processed_rows__lte=models.F("total_rows")),
                name="feedback_import_processed_within_total",
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "-created_at"]),
            # The sweeper's query: imports that are not finished.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status__in=["queued", "processing"]),
                name="feedback_import_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.filename})"

    @property
    def percent(self) -> int:
        """Progress from 0 to 100; a finished import is 100 even with no rows."""
        if self.status == self.Status.DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(100, self.processed_rows * 100 // self.total_rows)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class FeedbackImportChunk(models.Model):
    """The per-row results of one chunk of an import, as one compact JSON list.

    One row per chunk (not per CSV row) keeps a 100,000-row import to a few dozen
    inserts. It is written in the transaction that stores the chunk's feedback,
    so a chunk is either wholly imported and recorded here or not at all: a
    resumed import skips exactly the chunks found here.
    """

    feedback_import = models.ForeignKey(
        FeedbackImport, on_delete=models.CASCADE, related_name="chunks"
    )
    index = models.PositiveIntegerField()
    first_row = models.PositiveIntegerField()
    row_count = models.PositiveIntegerField()
    succeeded = models.PositiveIntegerField(default=0)
    # [[row_number, outcome, reason, feedback_id, event_id, reference], ...]
    results = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["feedback_import", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["feedback_import", "index"],
                name="feedback_import_chunk_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.feedback_import_id} chunk {self.index}"
