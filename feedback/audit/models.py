from django.conf import settings
from django.db import models
from django.utils import timezone

from feedback.models import ApiKey


class AuditEntry(models.Model):
    """One export of personal data or one change of configuration.

    Append-only: nothing changes a row, and only `audit_expire` deletes them
    once they are older than LEADBACK_AUDIT_RETENTION_DAYS. Rows name fields,
    never their values, and never a lead's personal data.
    """

    class Kind(models.TextChoices):
        EXPORT = "export", "exported personal data"
        ADDITION = "addition", "added"
        CHANGE = "change", "changed"
        DELETION = "deletion", "deleted"

    class Via(models.TextChoices):
        ADMIN = "admin", "admin"
        PORTAL = "portal", "portal"
        API = "api", "API"
        COMMAND = "command", "command line"
        OTHER = "other", "other"

    occurred_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField("action", max_length=16, choices=Kind.choices)
    via = models.CharField("channel", max_length=16, choices=Via.choices)
    # The actor as it was named then: the user or key may be deleted later.
    actor = models.CharField(max_length=200)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="user",
    )
    actor_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="API key",
    )
    address = models.GenericIPAddressField(
        "client address", null=True, blank=True, unpack_ipv4=True
    )
    subject = models.CharField(
        max_length=100,
        help_text="What was exported (the export's name) or changed (the kind of "
        "object).",
    )
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField("object", max_length=200, blank=True)
    fields = models.JSONField(
        default=list, blank=True, help_text="The names of the fields changed."
    )
    query = models.TextField(
        blank=True,
        help_text="The export's filters, with searched contact details withheld.",
    )
    row_count = models.PositiveIntegerField("rows", null=True, blank=True)

    class Meta:
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log entries"
        # Only seeing: nothing may add, change or delete a row through
        # permissions, superusers' pages included (the admin refuses too).
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["occurred_at"], name="auditentry_occurred"),
            models.Index(
                fields=["kind", "occurred_at"], name="auditentry_kind_occurred"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.get_kind_display()}: {self.subject}"
