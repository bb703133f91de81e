"""Sending a batch config's file with the transport the config names."""

from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from sources.models import FeedbackConfig
from sources.transports import BatchFile, BatchTransport, StillMine
from sources.transports.registry import TRANSPORTS, batch_transport

# What a file name template sees (feedback/forwarding/batches.py fills in the
# real values); used to check a template on save.
SAMPLE_FILE_VARIABLES: dict[str, Any] = {
    "period": {
        "start": datetime(2026, 11, 24, 6, tzinfo=UTC),
        "end": datetime(2026, 11, 25, 6, tzinfo=UTC),
    },
    "source": {"name": "Bluesky Leads", "slug": "bluesky-leads"},
    "kind": "return",
    "run": {"id": "run_0123456789abcdef01234567", "rows": 42},
}
DEFAULT_PORTS: dict[str, int] = {
    name: transport.default_port
    for name, transport in TRANSPORTS.items()
    if transport.default_port is not None
}


def batch_destination(config: FeedbackConfig) -> BatchTransport:
    """The transport a batch config describes, set up with its secrets;
    a permanent TransportError when the config names none."""
    transport = batch_transport(config.batch_transport)
    return transport(config, timeout_s=float(settings.LEADBACK_BATCH_TIMEOUT_S))


def batch_file_send(
    *, config: FeedbackConfig, file: BatchFile, still_mine: StillMine | None = None
) -> str:
    """Deliver `file` as the config says; raises TransportError. Network I/O:
    never call inside a transaction."""
    return batch_destination(config).put(file, still_mine=still_mine)
