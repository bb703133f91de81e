"""Erasure (DESIGN §12): a person seeded everywhere their data can land is
erased, and a dump of the whole database and the var directory no longer
holds their email, phone or name, while every report counts the same."""

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone

from feedback.corrections.services import feedback_retract
from feedback.forwarding.batches import batch_run_create
from feedback.forwarding.engine import notifications_deliver_due
from feedback.forwarding.models import BatchRun, NotificationAttempt
from feedback.imports.models import FeedbackImport
from feedback.imports.services import feedback_import_create, feedback_import_process
from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback, IdempotencyKey, Lead
from feedback.privacy.models import Erasure
from feedback.returns.models import ReturnTransition
from feedback.suppression.digests import sha256_of
from feedback.suppression.models import SuppressionEntry, SuppressionList
from reporting.filters import ReportFilters
from reporting.reports.registry import REPORTS
from sources.models import FeedbackConfig, FieldMapping
from tests.factories import BuyerFactory, FlowFactory, SourceFactory
from tests.sources.servers import RecordingServer, Reply

EMAIL = "Jolene.Quarterfield@Example.org"
PHONE = "(512) 555-0147"
FIRST = "Jolene"
LAST = "Quarterfield"
LEAD_ID = "lead-erase-7781"
# Another person, whose data must stay.
KEEP_EMAIL = "otto.keeper@example.net"
KEEP_LAST = "Keepington"

NEEDLES = [
    EMAIL.lower(),
    "Jolene.Quarterfield",
    "555-0147",
    "5125550147",
    FIRST,
    LAST,
]


@pytest.fixture
def engine(settings, tmp_path):
    settings.LEADBACK_QUEUE_ON_COMMIT = False
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = [0, 5]
    settings.LEADBACK_RETRY_JITTER = 0
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings


@pytest.fixture
def receiver():
    # The source answers with the contact it received, as some do.
    def reply(recorded):
        sent = json.loads(recorded.body)
        return Reply(
            200,
            json.dumps(
                {"ok": True, "contact": sent["email"], "name": sent["name"]}
            ).encode(),
        )

    with RecordingServer(reply) as server:
        yield server


def _config(source, url, *, kind, **fields):
    config = FeedbackConfig.objects.create(source=source, kind=kind, url=url, **fields)
    for position, (target, value) in enumerate(
        [
            ("event", "{{ event.id }}"),
            ("email", "{{ lead.email }}"),
            ("phone", "{{ lead.phone_1 }}"),
            ("name", "{{ lead.first_name }} {{ lead.last_name }}"),
            ("reason", "{{ feedback.reason }}"),
        ]
    ):
        FieldMapping.objects.create(
            config=config, position=position, target=target, value=value
        )
    return config


def _record(client, *, buyer, source, flow, lead):
    response = client.post(
        "/api/v1/events",
        {
            "buyer": buyer.slug,
            "source": source.slug,
            "flow": flow.slug,
            "price": "30.00",
            "reference": f"CRM-{buyer.slug}",
            "lead": lead,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"rec-{buyer.slug}-{lead['id']}",
    )
    assert response.status_code == 201, response.content
    return response.json()["event_id"]


def _receive(buyer, data):
    result = feedback_receive(buyer=buyer, data=data, channel=Feedback.Channel.API)
    assert result.feedback is not None, result
    return result.feedback


def _reports():
    today = timezone.localdate()
    filters = ReportFilters(start=today - timedelta(days=30), end=today)
    out = {}
    for code, report_class in REPORTS.items():
        report = report_class(filters)
        if report_class.sections:
            tables = report.generate_sections(report_class.sections)
        else:
            tables = [report.generate()]
        out[code] = [list(table.csv_rows()) for table in tables]
    return out


def _dump(settings) -> str:
    """Every row of every table, as text."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
        command = [
            "pg_dump",
            "--data-only",
            "-h",
            db.get("HOST") or "127.0.0.1",
            "-p",
            str(db.get("PORT") or 5432),
            "-U",
            db.get("USER") or "postgres",
            db["NAME"],
        ]
        done = subprocess.run(command, env=env, capture_output=True, check=True)
        return done.stdout.decode("utf-8", "replace")
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names)
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("utf-8", "replace")
                    parts.append(str(value))
    return "\n".join(parts)


def _var_text(var_dir: Path) -> str:
    return "\n".join(
        path.read_bytes().decode("utf-8", "replace")
        for path in var_dir.rglob("*")
        if path.is_file()
    )


def _hits(text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in NEEDLES if needle.lower() in lowered]


def _where(text: str) -> list[str]:
    """The text around each hit, for a failing assertion to show."""
    lowered = text.lower()
    found = []
    for needle in NEEDLES:
        at = lowered.find(needle.lower())
        if at >= 0:
            found.append(text[max(0, at - 120) : at + 60])
    return found


@pytest.mark.django_db(transaction=True)
def test_an_erased_person_is_nowhere_in_the_database_or_the_var_directory(
    engine, receiver, integration_client
):
    source = SourceFactory()
    flow = FlowFactory()
    buyers = BuyerFactory.create_batch(3)
    _config(source, receiver.url("/returns"), kind="return", method="json")
    batch = _config(
        source,
        "",
        kind="conversion",
        method=FeedbackConfig.Method.BATCH,
        batch_every=FeedbackConfig.BatchEvery.DAY,
        batch_transport=FeedbackConfig.Transport.FTP,
        batch_host="127.0.0.1",
        batch_port=2121,
        batch_username="u",
        batch_password="p",
    )
    lead = {
        "id": LEAD_ID,
        "first_name": FIRST,
        "last_name": LAST,
        "email": EMAIL,
        "phone_1": PHONE,
        "state": "TX",
    }
    keeper = {
        "id": "lead-keep-1",
        "first_name": "Otto",
        "last_name": KEEP_LAST,
        "email": KEEP_EMAIL,
        "phone_1": "+1 206 555 0199",
    }
    events = [
        _record(integration_client, buyer=b, source=source, flow=flow, lead=lead)
        for b in buyers
    ]
    kept_event = _record(
        integration_client, buyer=buyers[0], source=source, flow=flow, lead=keeper
    )
    # Buyer 1 returns the lead with a note naming the person: forwarded as JSON,
    # the request and the answer stored with the attempt.
    returned = _receive(
        buyers[0],
        {
            "event_id": events[0],
            "type": "return",
            "reason": "Wrong number",
            "note": f"Spoke to {FIRST} {LAST}, asked not to be called",
            "custom": {"callback": PHONE},
        },
    )
    _receive(buyers[0], {"event_id": kept_event, "type": "return", "reason": "Fraud"})
    assert notifications_deliver_due() == 2
    assert NotificationAttempt.objects.filter(request_body__contains=LAST).exists()
    # Buyer 2 converts it by a CSV import that names the person; the
    # conversion goes into a batch file.
    content = (
        "event_id,type,revenue,note\r\n"
        f"{events[1]},conversion,120.00,Sold to {FIRST} {LAST} ({EMAIL})\r\n"
    ).encode()
    upload = feedback_import_create(
        buyer=buyers[1], user=None, file=content, filename=f"{LAST}-sales.csv"
    )
    feedback_import_process(import_id=upload.pk)
    run = batch_run_create(
        config=batch, period_end=timezone.now() + timedelta(seconds=1)
    )
    assert run is not None
    run.refresh_from_db()
    assert LAST.encode() in bytes(run.content)
    # Buyer 3 returns it with dispute evidence kept on disk.
    third = _receive(
        buyers[2], {"event_id": events[2], "type": "status", "reason": "Contacted"}
    )
    step = ReturnTransition(
        feedback=returned, actor="buyer", note=f"Evidence: call with {FIRST}"
    )
    step.evidence.save(
        f"{LAST}.txt", ContentFile(f"{EMAIL} {PHONE}".encode()), save=False
    )
    step.save()
    assert third.pk
    # Buyer 3 then retracts its status update, naming the person in the reason.
    feedback_retract(feedback=third, reason=f"Wrong lead: {FIRST} {LAST} is a tenant")
    assert _hits(_var_text(engine.VAR_DIR))
    assert set(_hits(_dump(engine))) == set(NEEDLES)
    suppression = SuppressionList.objects.create(slug="erased", name="Erased")
    before = _reports()

    response = integration_client.post(
        "/api/v1/privacy/erasures",
        {"email": EMAIL, "suppression_list": "erased"},
        format="json",
    )

    assert response.status_code == 201, response.content
    receipt = response.json()
    assert receipt["leads"] == 1
    assert receipt["counts"]["leads"] == 1
    assert receipt["counts"]["import_files"] == 1
    assert receipt["counts"]["batch_files"] == 1
    assert receipt["counts"]["evidence_files"] == 1
    assert receipt["counts"]["stored_answers"] == 3
    dump = _dump(engine)
    assert _hits(dump) == [], _where(dump)
    assert _hits(_var_text(engine.VAR_DIR)) == [], _where(_var_text(engine.VAR_DIR))
    # The other person and the non-personal facts stay.
    assert KEEP_EMAIL in dump
    assert KEEP_LAST in dump
    assert _reports() == before
    erased = Lead.objects.get(public_id=LEAD_ID)
    assert erased.data == {}
    assert erased.deliveries.count() == 3
    assert Feedback.objects.filter(lead=erased).count() == 3
    assert Feedback.objects.get(pk=returned.pk).reason == "Wrong number"
    assert BatchRun.objects.get(pk=run.pk).row_count == 1
    assert FeedbackImport.objects.get(pk=upload.pk).succeeded_rows == 1
    # The stored answers to recording the erased lead are gone, the other's stays.
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == [
        f"rec-{buyers[0].slug}-lead-keep-1"
    ]
    erasure = Erasure.objects.get(public_id=receipt["id"])
    assert erasure.email_sha256 == sha256_of(EMAIL.lower())
    assert erasure.via == "api"
    assert erasure.requested_by.startswith("API key")
    assert set(
        SuppressionEntry.objects.filter(list=suppression).values_list("field", "sha256")
    ) == {("email", sha256_of(EMAIL.lower())), ("phone", sha256_of("5125550147"))}
