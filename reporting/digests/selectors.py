"""Reads of digests and their sends."""

from django.db.models import QuerySet

from reporting.models import Digest, DigestSend
from sources.models import FeedbackConfig, Kind


def digest_list(*, enabled_only: bool = False) -> QuerySet[Digest]:
    digests = Digest.objects.select_related("source").order_by("slug")
    if enabled_only:
        digests = digests.filter(enabled=True)
    return digests


def digest_send_list(*, digest: Digest) -> QuerySet[DigestSend]:
    return DigestSend.objects.filter(digest=digest).order_by("-period_start")


def digest_batch_config(*, source_id: int) -> FeedbackConfig | None:
    """The batch config whose transport the batch channel uses: the source's
    enabled batch configs first, returns before other kinds, then the oldest."""
    configs = list(
        FeedbackConfig.objects.filter(
            source_id=source_id, method=FeedbackConfig.Method.BATCH
        ).select_related("source")
    )
    configs.sort(key=lambda c: (not c.enabled, c.kind != Kind.RETURN, c.pk))
    return configs[0] if configs else None
