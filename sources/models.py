from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import models


def validate_reason_list(value: object) -> None:
    """Allowed reasons are a list of distinct, non-blank strings of ≤ 200 characters."""
    if not isinstance(value, list):
        raise ValidationError('Enter a list of reasons, e.g. ["Wrong number"].')
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValidationError(f"Each reason must be non-blank text, not {item!r}.")
        if len(item) > 200:
            raise ValidationError("A reason may be at most 200 characters.")
        if item.strip().lower() in seen:
            raise ValidationError(f"The reason {item!r} is listed twice.")
        seen.add(item.strip().lower())


class Kind(models.TextChoices):
    """What a feedback reports. LeadConduit's `type` carries the first two."""

    CONVERSION = "conversion", "Conversion"
    RETURN = "return", "Return"
    STATUS = "status", "Status update"


class Source(models.Model):
    """A lead vendor: leads come from it; feedback about them may go back to it."""

    slug = models.SlugField(max_length=100, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    accepts_conversion = models.BooleanField(
        "accepts conversions",
        default=True,
        help_text="Whether buyers may report conversions for this source's leads.",
    )
    conversion_reasons = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_reason_list],
        help_text="Allowed conversion reasons; empty allows any reason.",
    )
    accepts_return = models.BooleanField(
        "accepts returns",
        default=True,
        help_text="Whether buyers may return this source's leads.",
    )
    return_reasons = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_reason_list],
        help_text="Allowed return reasons; empty allows any reason.",
    )
    accepts_status = models.BooleanField(
        "accepts status updates",
        default=True,
        help_text="Whether buyers may report status updates for this source's leads.",
    )
    status_reasons = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_reason_list],
        help_text="Allowed status reasons; empty allows any reason.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def accepts(self, kind: str) -> bool:
        return bool(getattr(self, f"accepts_{Kind(kind).value}"))

    def allowed_reasons(self, kind: str) -> list[str]:
        """The reasons this source accepts for `kind`; an empty list allows any."""
        return list(getattr(self, f"{Kind(kind).value}_reasons") or [])
