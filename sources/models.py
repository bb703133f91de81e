from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_slug
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
    """A lead vendor: leads come from it; feedback about them may go back to it.

    `status` is advice to the lead distribution system (DESIGN §11): a paused
    source still receives and forwards feedback; the distribution system reads
    the status to stop buying from it. Changed only by the pause and resume
    services, which keep the audit trail.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

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
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.ACTIVE, editable=False
    )
    paused_reason = models.CharField(max_length=500, blank=True, editable=False)
    paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paused(self) -> bool:
        return self.status == self.Status.PAUSED

    def accepts(self, kind: str) -> bool:
        return bool(getattr(self, f"accepts_{Kind(kind).value}"))

    def allowed_reasons(self, kind: str) -> list[str]:
        """The reasons this source accepts for `kind`; an empty list allows any."""
        return list(getattr(self, f"{Kind(kind).value}_reasons") or [])


class FeedbackConfig(models.Model):
    """How one kind of feedback is forwarded to a source (DESIGN §5.1).

    A source may hold several per kind (say a real-time JSON post and a nightly
    file); each enabled one gets its own notification.
    """

    class ForwardOn(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (at once)"
        APPROVED = "approved", "Approved (after review)"

    class Method(models.TextChoices):
        QUERY = "query", "Query string (GET)"
        FORM = "form", "Form post"
        JSON = "json", "JSON"
        XML = "xml", "XML"
        SOAP = "soap", "SOAP"
        BATCH = "batch", "Batch file"

    class HttpMethod(models.TextChoices):
        GET = "GET"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"

    class AuthType(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "HTTP Basic"
        BEARER = "bearer", "Bearer token"
        HEADER = "header", "API key header"
        WSSE = "wsse", "WS-Security UsernameToken (SOAP)"

    class OnMatch(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure (the source refused it)"
        ERROR = "error", "Error (retry)"

    class SoapVersion(models.TextChoices):
        SOAP_11 = "1.1", "SOAP 1.1"
        SOAP_12 = "1.2", "SOAP 1.2"

    class BatchEvery(models.TextChoices):
        HOUR = "hour", "Every hour"
        DAY = "day", "Every day"
        WEEK = "week", "Every week"

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    class Transport(models.TextChoices):
        FTP = "ftp", "FTP"
        FTPS = "ftps", "FTPS (FTP over TLS)"
        SFTP = "sftp", "SFTP"
        EMAIL = "email", "Email (file attached)"
        S3 = "s3", "S3-compatible object storage"

    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="feedback_configs"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.JSON)
    url = models.URLField(
        "URL",
        max_length=2000,
        blank=True,
        help_text="Where to send it; for SOAP, the WSDL's URL. Not used by batch "
        "configs.",
    )
    http_method = models.CharField(
        "HTTP method",
        max_length=8,
        choices=HttpMethod.choices,
        default=HttpMethod.POST,
        help_text="For form, JSON and XML configs; query configs always GET and SOAP "
        "always POSTs.",
    )
    forward_on = models.CharField(
        "forward returns when",
        max_length=10,
        choices=ForwardOn.choices,
        default=ForwardOn.ACCEPTED,
        help_text="Returns only: forward each return when it is accepted, or only "
        "once it is approved (never a rejected one).",
    )
    sync = models.BooleanField(
        "send synchronously",
        default=False,
        help_text="Send while the buyer waits, and answer with the source's outcome.",
    )
    timeout_s = models.FloatField(
        "timeout (seconds)",
        default=10,
        validators=[MinValueValidator(0.1), MaxValueValidator(120)],
    )
    headers = models.JSONField(
        default=dict, blank=True, help_text='Extra headers, e.g. {"X-Partner": "acme"}.'
    )
    auth_type = models.CharField(
        "authentication", max_length=8, choices=AuthType.choices, default=AuthType.NONE
    )
    auth_username = models.CharField("username", max_length=200, blank=True)
    auth_header_name = models.CharField(
        "header name", max_length=100, blank=True, help_text="For an API key header."
    )
    auth_secret = models.CharField(
        "password, token or key",
        max_length=2000,
        blank=True,
        help_text="Write-only: leave blank to keep the stored one.",
    )
    wsse_password_digest = models.BooleanField(
        "WS-Security password digest",
        default=False,
        help_text="Send a PasswordDigest instead of the password as text.",
    )
    signing_enabled = models.BooleanField(
        "sign requests",
        default=False,
        help_text="Standard Webhooks signature headers (webhook-signature).",
    )
    signing_secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="A whsec_ secret; one is generated when signing is enabled.",
    )
    criteria = models.JSONField(
        null=True,
        blank=True,
        help_text="A rule set the feedback must pass to be sent; else it is skipped.",
    )
    # DESIGN §12: where an erased lead's source is told of the erasure.
    on_erase = models.JSONField(
        "erasure notice",
        null=True,
        blank=True,
        help_text='Optional: {"url": "https://…", "method": "json", "mappings": '
        '{"lead_id": "{{ lead.id }}"}}; sent when a lead of this source is erased. '
        "Variables: lead.id, events (ids), erasure.id.",
    )
    soap_operation = models.CharField("SOAP operation", max_length=200, blank=True)
    soap_version = models.CharField(
        "SOAP version",
        max_length=4,
        choices=SoapVersion.choices,
        default=SoapVersion.SOAP_11,
    )
    outcome_search_term = models.CharField(
        max_length=500,
        blank=True,
        help_text="A case-insensitive regular expression (/.../ accepted). Empty: "
        "any answer but a 5xx is a success.",
    )
    outcome_search_path = models.CharField(
        max_length=500,
        blank=True,
        help_text="Where to look: a dot path (JSON, SOAP), an XPath (XML), a CSS "
        "selector (HTML); empty searches the whole body.",
    )
    outcome_on_match = models.CharField(
        max_length=8, choices=OnMatch.choices, default=OnMatch.SUCCESS
    )
    reason_path = models.CharField(max_length=500, blank=True)
    default_reason = models.CharField(max_length=500, blank=True)
    reference_path = models.CharField(max_length=500, blank=True)
    # Batch files (DESIGN §5.6): the period's notifications as one CSV file whose
    # columns are the mappings, sent on a schedule by FTP, FTPS, SFTP or email.
    batch_every = models.CharField(
        "send", max_length=8, choices=BatchEvery.choices, default=BatchEvery.DAY
    )
    batch_at = models.TimeField(
        "at",
        null=True,
        blank=True,
        help_text="Time of day for daily and weekly files (default 00:00).",
    )
    batch_day = models.PositiveSmallIntegerField(
        "on", choices=Weekday.choices, null=True, blank=True, help_text="Weekly files."
    )
    batch_timezone = models.CharField(
        "time zone",
        max_length=64,
        default="UTC",
        help_text="The schedule's time zone, e.g. America/Chicago.",
    )
    batch_transport = models.CharField(
        "transport", max_length=8, choices=Transport.choices, blank=True
    )
    batch_host = models.CharField("host", max_length=253, blank=True)
    batch_port = models.PositiveIntegerField(
        "port",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Default: 21 for FTP and FTPS, 22 for SFTP.",
    )
    # S3 keeps its access key id and secret access key here too, so the secret
    # is write-only, redacted and kept on import like every other password.
    batch_username = models.CharField(
        "username", max_length=200, blank=True, help_text="For S3: the access key id."
    )
    batch_password = models.CharField(
        "password",
        max_length=2000,
        blank=True,
        help_text="For S3: the secret access key. Write-only: leave blank to keep "
        "the stored one.",
    )
    batch_private_key = models.TextField(
        "SFTP private key",
        max_length=20000,
        blank=True,
        help_text="An OpenSSH private key (PEM). Write-only: leave blank to keep "
        "the stored one.",
    )
    batch_host_key = models.TextField(
        "SFTP host key",
        max_length=20000,
        blank=True,
        help_text="The server's public key as in known_hosts, e.g. "
        "'ssh-ed25519 AAAA...'. Any other key is refused.",
    )
    batch_tls_certificate = models.TextField(
        "FTPS certificate",
        max_length=20000,
        blank=True,
        help_text="A PEM certificate to trust for this server (e.g. its "
        "self-signed one); empty trusts the system's certificate authorities.",
    )
    batch_directory = models.CharField(
        "directory",
        max_length=500,
        blank=True,
        help_text="Where to put the file; for S3, the key prefix (e.g. incoming/).",
    )
    batch_s3_bucket = models.CharField("S3 bucket", max_length=63, blank=True)
    batch_s3_region = models.CharField(
        "S3 region", max_length=64, blank=True, help_text="Default: us-east-1."
    )
    batch_s3_endpoint_url = models.URLField(
        "S3 endpoint URL",
        max_length=2000,
        blank=True,
        help_text="For S3-compatible storage (MinIO, Ceph...), e.g. "
        "https://minio.source.example:9000; empty for AWS.",
    )
    batch_email_to = models.JSONField(
        "email to",
        default=list,
        blank=True,
        help_text='Recipients, e.g. ["returns@source.example"].',
    )
    batch_email_subject = models.CharField("email subject", max_length=500, blank=True)
    batch_file_name = models.CharField(
        "file name",
        max_length=500,
        blank=True,
        help_text="A template, e.g. returns-{{ period.start|date('%Y%m%d') }}.csv",
    )
    batch_header = models.BooleanField(
        "header row", default=True, help_text="Start the file with the column names."
    )
    batch_send_empty = models.BooleanField(
        "send empty files",
        default=False,
        help_text="Send a file even when the period had no feedback.",
    )
    # Corrections (DESIGN §12): where and how a retraction or an amendment of
    # feedback this config forwarded is told to the source, like LeadConduit's
    # separate endpoints: {"method", "url", "http_method", "soap_operation",
    # "mappings": [{"target", "value"}]}. Empty: the source is not told. Auth,
    # headers, signing, timeout and response reading are the config's own.
    on_retract = models.JSONField(
        "on retraction",
        null=True,
        blank=True,
        help_text="Optional: the request that tells the source a feedback was "
        "retracted. Empty: it is not told.",
    )
    on_amend = models.JSONField(
        "on revenue amendment",
        null=True,
        blank=True,
        help_text="Optional: the request that tells the source a conversion's "
        "revenue was amended. Empty: it is not told.",
    )
    disabled_reason = models.CharField(
        max_length=500,
        blank=True,
        help_text="Why Leadback switched this config off (e.g. the source answered "
        "410 Gone). Cleared when an admin enables it again.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Groups of fields, named once for the admin form, config-as-code and checks.
    RESPONSE_FIELDS = (
        "outcome_search_term",
        "outcome_search_path",
        "outcome_on_match",
        "reason_path",
        "default_reason",
        "reference_path",
    )
    # What only real-time (HTTP and SOAP) configs use.
    HTTP_FIELDS = (
        "http_method",
        "sync",
        "timeout_s",
        "headers",
        "auth_type",
        "auth_username",
        "auth_header_name",
        "auth_secret",
        "wsse_password_digest",
        "signing_enabled",
        "signing_secret",
        "soap_operation",
        "soap_version",
        *RESPONSE_FIELDS,
    )

    class Meta:
        ordering = ["source", "kind", "pk"]
        indexes = [
            models.Index(
                fields=["source", "kind"],
                condition=models.Q(enabled=True),
                name="feedbackconfig_enabled_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(timeout_s__gt=0, timeout_s__lte=120),
                name="feedbackconfig_timeout_range",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.source} · {self.get_kind_display()} · {self.get_method_display()}"
        )


class FieldMapping(models.Model):
    """One field of the request: a target name and the template of its value."""

    config = models.ForeignKey(
        FeedbackConfig, on_delete=models.CASCADE, related_name="mappings"
    )
    position = models.PositiveSmallIntegerField(default=0)
    target = models.CharField(
        max_length=500,
        help_text="A parameter name, a dotted JSON or XML path (lead@id for an "
        "attribute) or a SOAP argument.",
    )
    value = models.TextField(
        max_length=5000,
        blank=True,
        help_text="A template, e.g. {{ lead.email }} or {{ feedback.reason|upper }}.",
    )

    class Meta:
        ordering = ["config", "position", "pk"]

    def __str__(self) -> str:
        return self.target
