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
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Upper
from django.utils import timezone

from sources.models import Kind, Source

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
    DEFAULT_RETRACT_HOURS = 72

    class Review(models.TextChoices):
        AUTO = "auto", "Automatic: an accepted return is approved"
        MANUAL = "manual", "Manual: every return waits for a decision"
        RULES = "rules", "Rules: approved when the auto-approve rules pass"

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
    # Returns resolution (DESIGN §10); read for returns only.
    review = models.CharField(
        max_length=10,
        choices=Review.choices,
        default=Review.AUTO,
        help_text="How an accepted return is decided.",
    )
    auto_approve = models.JSONField(
        "auto-approve rules",
        null=True,
        blank=True,
        help_text="With rules review: a return that passes them is approved at once.",
    )
    cap_percent = models.DecimalField(
        "return cap (% of the month's deliveries)",
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Leave empty for no cap.",
    )
    cap_min = models.PositiveIntegerField(
        "return cap floor",
        default=0,
        validators=[MaxValueValidator(1_000_000)],
        help_text="The allowance is never below this many returns a month.",
    )
    credit_percent = models.DecimalField(
        "credit (% of the price)",
        max_digits=5,
        decimal_places=2,
        default=100,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="An approved return credits this share of the delivery's price.",
    )
    dispute_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MaxValueValidator(365)],
        help_text="How long after a rejection the buyer may dispute it.",
    )
    # Corrections (DESIGN §12): read for the feedback's own kind and flow.
    retract_hours = models.PositiveIntegerField(
        "correction window (hours)",
        default=DEFAULT_RETRACT_HOURS,
        validators=[MaxValueValidator(8760)],
        help_text="How long after sending feedback the buyer may retract it or "
        "amend its revenue; staff may at any time.",
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

    @property
    def capped(self) -> bool:
        return self.cap_percent is not None


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
        indexes = [
            models.Index(fields=["source", "received_at"]),
            # The portal's search by name: `data__last_name__iexact` compiles
            # to exactly this expression, so PostgreSQL can use the index.
            models.Index(
                Upper(Cast(KT("data__last_name"), models.TextField())),
                name="lead_last_name_upper",
            ),
        ]

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


class BuyerMonth(models.Model):
    """A buyer's deliveries in one flow and calendar month (in TIME_ZONE), and
    the return requests about them that count against a cap (pending, disputed
    or approved). Kept as counters by the services that record deliveries and
    decide returns, so a cap is checked without counting the month (DESIGN §10).
    """

    buyer = models.ForeignKey(
        Buyer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="The month's first day.")
    deliveries = models.PositiveIntegerField(default=0)
    returns = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "month", "flow"], name="buyer_month_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.buyer_id} {self.month:%Y-%m} flow {self.flow_id}"


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

    class ReviewState(models.TextChoices):
        APPROVED = "approved", "Approved"
        PENDING = "pending", "Pending review"
        REJECTED = "rejected", "Rejected"
        DISPUTED = "disputed", "Disputed"

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
    # An accepted return's review state (DESIGN §10); empty for everything else.
    review_state = models.CharField(
        max_length=10, choices=ReviewState.choices, blank=True, default=""
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
    # Set by feedback_retract (DESIGN §12): the row stays, reports skip it.
    retracted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "feedback"
        # Retracting and amending write history rows and tell sources: a
        # permission of its own, not part of the read-only feedback pages.
        permissions = [("correct_feedback", "Can retract and amend feedback")]
        constraints = [
            # A delivery can be returned successfully once; the database holds the
            # line when two returns race. A retracted return frees the slot.
            models.UniqueConstraint(
                fields=["delivery"],
                condition=Q(
                    kind="return", outcome="success", retracted_at__isnull=True
                ),
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
            # The review queue: returns waiting for a decision, oldest first.
            models.Index(
                fields=["received_at"],
                condition=Q(review_state__in=["pending", "disputed"]),
                name="feedback_awaiting_review",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.delivery_id} ({self.outcome})"

    @property
    def is_retracted(self) -> bool:
        return self.retracted_at is not None


class FeedbackCorrection(models.Model):
    """One correction of a feedback (DESIGN §12): a retraction or an amendment
    of a conversion's revenue, with who made it, when and why. Written by the
    service that makes it, never edited: the record of corrections."""

    class Action(models.TextChoices):
        RETRACT = "retract", "Retraction"
        AMEND = "amend", "Revenue amendment"

    public_id = models.UUIDField(
        "correction id", default=uuid.uuid4, unique=True, editable=False
    )
    # Indexed by the (feedback, created_at) index in Meta.
    feedback = models.ForeignKey(
        Feedback, on_delete=models.CASCADE, related_name="corrections", db_index=False
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    reason = models.TextField(blank=True)
    # The revenue before and after an amendment; empty for a retraction.
    previous_revenue = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True
    )
    revenue = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True
    )
    channel = models.CharField(max_length=20, choices=Feedback.Channel.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "feedback correction"
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["feedback", "created_at"]),
            # What the rollup refresh recounts: corrections since it last ran.
            models.Index(fields=["created_at"]),
        ]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.get_action_display()} of {self.feedback_id}"

    @property
    def actor(self) -> str:
        """Who made it, as a short label: the key's or the user's name."""
        if self.api_key_id is not None and self.api_key is not None:
            return f"API key {self.api_key.name}"
        if self.user_id is not None and self.user is not None:
            return self.user.get_username()
        return "Leadback"


class IdempotencyKey(models.Model):
    """A POST's Idempotency-Key and the response it got, replayed on a retry.

    Scoped to the caller's owner (a buyer, an integration key or a user) so two
    buyers can pick the same key without seeing each other's answers.
    """

    owner = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    # The body exactly as first sent, so a replay is byte for byte the same.
    response_content = models.BinaryField(null=True)
    # Rows stored before response_content hold the data the body was rendered
    # from instead; they are replayed by rendering it again.
    response_body = models.JSONField(null=True, blank=True)
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
