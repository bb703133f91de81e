import datetime

from django.db import models

# The permissions the report pages check (docs/roles.md).
VIEW_REPORTS = "reporting.view_reports"
VIEW_BILLING = "reporting.view_billing"


class ReportAccess(models.Model):
    """No rows and no table: it carries the report permissions.

    Reports read other apps' rows, so no model of their own stands for them; Django
    keeps permissions per model, and this one holds them so groups can be given
    `view_reports` (every report page and CSV) and `view_billing` (billing too).
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_reports", "Can view reports and download their CSV"),
            ("view_billing", "Can view the billing report"),
        ]

    def __str__(self) -> str:
        return "report access"


class DailyRollup(models.Model):
    """Additive report measures per delivery day, dimension group and kind.

    One set of rows per dimension (source, flow, buyer, reason, kind): a row with
    an empty `kind` holds the delivery side (delivered, cost, deliveries with any
    feedback); a row per kind holds the feedback side and the deliveries with
    feedback of that kind. Days are delivery days, so these rows serve the
    delivery-date basis only; reporting/rollups.py keeps them current and
    docs/reports.md says when the reports use them.
    """

    # A dimension, "received:<dimension>" (billing) or either under "month:"
    # (the sums of a calendar month, on its first day).
    dimension = models.CharField(max_length=40)
    day = models.DateField()
    # A source, flow or buyer id as text, a reason, a kind, or "<source id>:<reason>".
    key = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=20, blank=True)
    delivered = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    covered = models.PositiveIntegerField(default=0)
    received = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    # The price of the deliveries returned (accepted returns), for by reason.
    returned_cost = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    quality_sum = models.PositiveIntegerField(default=0)
    quality_count = models.PositiveIntegerField(default=0)
    contacted = models.PositiveIntegerField(default=0)
    not_contacted = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dimension", "day", "key", "kind"],
                name="daily_rollup_unique_group",
            )
        ]
        indexes = [models.Index(fields=["dimension", "day"])]

    def __str__(self) -> str:
        return f"{self.dimension} {self.key or '-'} {self.kind or '*'} {self.day}"


class RollupState(models.Model):
    """How far the daily rollups have read: one row.

    The highest feedback and delivery ids read tell what is new. Ids below them
    that were not there when they were read (a transaction that had taken its
    id but not committed yet, or one that rolled back) are kept in `gaps` for
    a while, so a late commit is still counted, once (reporting/rollups.py)."""

    last_feedback_id = models.BigIntegerField(default=0)
    last_delivery_id = models.BigIntegerField(default=0)
    # {"feedback": [[seen at (epoch seconds), [ids…]], …], "delivery": […]}
    gaps = models.JSONField(default=dict, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # When the sent rollups last read the changed notifications: the next
    # refresh reads those changed since (less the late-commit margin).
    sent_read_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollups as of {self.refreshed_at}"


class TimingRollup(models.Model):
    """Time from delivery to feedback as a histogram, per delivery month and
    source or buyer.

    Percentiles of durations do not add up across days; counts per bin do. Each
    row counts the feedback of one group whose duration falls in one of the
    report's buckets and one log-scale bin (reporting/timing.py), so bucket
    counts are exact and percentiles read from the bins are within 1%.
    Kept current by the same refresh as the daily rollups."""

    dimension = models.CharField(max_length=20)
    # The first day of the delivery month, in the server's time zone.
    month = models.DateField()
    # The source or buyer id.
    key = models.BigIntegerField()
    bucket = models.PositiveSmallIntegerField()
    bin = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dimension", "month", "key", "bucket", "bin"],
                name="timing_rollup_unique_bin",
            )
        ]

    def __str__(self) -> str:
        return f"{self.dimension} {self.key} {self.month:%Y-%m} bin {self.bin}"


class SentRollup(models.Model):
    """Feedback sent (notifications and their attempts) per day, config, source
    and kind, for delivery health and billing's sent columns.

    Notifications change after they are written (status, attempts): a refresh
    adds the difference between what was counted of each changed one
    (SentCounted) and what it is now (reporting/rollups.py). Attempt durations
    are kept as counts per log-scale bin (reporting/timing.py), so percentiles
    merged across days are within 1%.
    """

    # "delivered" (by the lead's delivery day) or "created" (by the
    # notification's own day), or either under "month:" (a calendar month's
    # sums, on its first day).
    basis = models.CharField(max_length=20)
    day = models.DateField()
    # The config's id as it was counted; None once the config was deleted.
    config_id = models.BigIntegerField(null=True)
    source_id = models.BigIntegerField()
    kind = models.CharField(max_length=20)
    notifications = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    dead = models.PositiveIntegerField(default=0)
    retried_then_succeeded = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    # Notifications tried at least once, and those of them answered >= 500 at
    # least once (billing, "created" rows only).
    sent = models.PositiveIntegerField(default=0)
    sent_5xx = models.PositiveIntegerField(default=0)
    # Attempt durations: {log bin: count}.
    durations = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["basis", "day"])]

    def __str__(self) -> str:
        return f"{self.basis} {self.config_id} {self.kind} {self.day}"


class SentCounted(models.Model):
    """A notification as the sent rollups last counted it: its config, status
    and attempts. A refresh reads the notifications that changed since the
    last one and adds to their rollup rows the difference between this and
    what they are now, instead of counting their days again
    (reporting/rollups.py). Attempts are only ever added, numbered from 1, in
    the transaction that moves the notification's `attempt_count` on: the
    attempts counted are those numbered up to `attempts`."""

    notification = models.OneToOneField(
        "feedback.Notification",
        primary_key=True,
        # Kept apart from the notification's own writes: no constraint to
        # check, nothing to cascade. A full rebuild starts these rows afresh.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="sent_counted",
    )
    # The config the notification is counted under (its config then: a
    # deleted config's notifications lose theirs).
    config_id = models.BigIntegerField(null=True)
    status = models.CharField(max_length=20)
    attempts = models.PositiveIntegerField(default=0)
    # Whether an attempt counted was answered with a status of 500 or above.
    answered_5xx = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"notification {self.notification_id}: {self.status}, {self.attempts}"


class Digest(models.Model):
    """A scheduled summary of one source's feedback (DESIGN §11, "Source digests").

    Each period (the previous day, or the previous seven days) is measured with
    the reports' own code (reporting/digests/figures.py) and sent by email or
    through the source's batch transport, once: a DigestSend row per period is
    taken before anything leaves.
    """

    class Every(models.TextChoices):
        DAY = "day", "Every day"
        WEEK = "week", "Every week"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        BATCH = "batch", "Batch files (the source's transport)"

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    slug = models.SlugField(max_length=100, unique=True)
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, related_name="digests"
    )
    enabled = models.BooleanField(default=True)
    every = models.CharField(max_length=8, choices=Every.choices, default=Every.WEEK)
    weekday = models.PositiveSmallIntegerField(
        choices=Weekday.choices,
        default=Weekday.MONDAY,
        help_text="Weekly digests: the day they are sent, covering the seven days "
        "before it.",
    )
    at = models.TimeField(
        "time of day",
        default=datetime.time(8, 0),
        help_text="When the digest is sent, in its time zone.",
    )
    timezone = models.CharField(
        "time zone",
        max_length=64,
        default="UTC",
        help_text="An IANA name such as Europe/Berlin; days start at midnight here.",
    )
    channel = models.CharField(
        max_length=8, choices=Channel.choices, default=Channel.EMAIL
    )
    recipients = models.JSONField(
        default=list,
        blank=True,
        help_text='Email channel: a list of addresses, e.g. ["ops@source.example"]. '
        "Email sends HTML, plain text and the returns as CSV; batch sends a summary "
        "and the returns as CSV files through the source's batch feedback config.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class DigestSend(models.Model):
    """One period of a digest, taken before it is sent: the unique constraint is
    what stops two beats, two nodes or a retry from sending it twice."""

    class Status(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    digest = models.ForeignKey(Digest, on_delete=models.CASCADE, related_name="sends")
    # The period's first and last day (inclusive), in the digest's time zone.
    period_start = models.DateField()
    period_end = models.DateField()
    channel = models.CharField(max_length=8, choices=Digest.Channel.choices)
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.SENDING
    )
    # Tries so far: a failed send is tried again by later beats, up to
    # reporting.digests.services.MAX_TRIES, while its period is the latest.
    tries = models.PositiveSmallIntegerField(default=1)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["digest", "period_start"], name="digest_send_once_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.digest} {self.period_start:%Y-%m-%d}"
