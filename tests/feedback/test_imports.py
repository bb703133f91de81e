"""CSV feedback imports: checking the file, processing it in chunks, results."""

import csv
import io
from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.imports.models import FeedbackImport, FeedbackImportChunk
from feedback.imports.selectors import (
    feedback_import_refused_csv,
    feedback_import_results,
    get_feedback_import_for_buyer,
)
from feedback.imports.services import (
    feedback_import_create,
    feedback_import_process,
    feedback_import_upload,
    feedback_imports_sweep,
)
from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerPolicy, Feedback
from sources.models import FeedbackConfig, Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory, SourceFactory

pytestmark = pytest.mark.django_db

CSV = Feedback.Channel.CSV


def csv_bytes(header, rows, *, delimiter=","):
    stream = io.StringIO()
    writer = csv.writer(stream, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue().encode()


def upload(buyer, content, *, user=None, filename="feedback.csv"):
    return feedback_import_create(
        buyer=buyer, user=user, file=content, filename=filename
    )


def run(buyer, content, **kwargs):
    feedback_import = upload(buyer, content, **kwargs)
    feedback_import_process(import_id=feedback_import.pk)
    feedback_import.refresh_from_db()
    return feedback_import


@pytest.fixture
def deliveries(buyer):
    return DeliveryEventFactory.create_batch(
        5, buyer=buyer, delivered_at=timezone.now() - timedelta(days=3)
    )


# Checking the file -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\r\n  \r\n", "empty"),
        (b"event_id,type\r\n", "no rows"),
        (b"type,reason\r\nreturn,x\r\n", "event_id or a reference column"),
        (b"event_id,reason\r\nabc,x\r\n", "type or an outcome_code column"),
        (b"event_id,type,colour\r\nabc,return,red\r\n", "Unknown column(s): colour"),
        (b"event_id,type,Type\r\nabc,return,return\r\n", "repeats the column(s) type"),
        (b"event_id,type\r\n\xff\xfeabc,return\r\n", "not UTF-8"),
        (b"event_id,type,notes,note\r\nabc,return,a,b\r\n", "one column"),
        (b'event_id,type\r\n"abc,return\r\n', "cannot be read as CSV"),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem(buyer, content, message):
    with pytest.raises(ValidationError) as excinfo:
        upload(buyer, content)

    assert message in excinfo.value.messages[0]
    assert not FeedbackImport.objects.exists()


def test_a_file_over_the_size_limit_is_refused(buyer, settings):
    settings.LEADBACK_IMPORT_MAX_BYTES = 1024 * 1024
    big = b"event_id,type\r\n" + b"a" * (1024 * 1024)

    with pytest.raises(ValidationError, match="larger than 1 MB"):
        upload(buyer, SimpleUploadedFile("big.csv", big))
    with pytest.raises(ValidationError, match="larger than 1 MB"):
        upload(buyer, big)


def test_header_names_match_case_insensitively_with_bom_and_semicolons(
    buyer, deliveries
):
    content = "\ufeff" + "Event_ID ; TYPE ; Notes ; Revenue\r\n"
    content += f"{deliveries[0].event_id};conversion;Called twice;12.50\r\n"

    feedback_import = run(buyer, content.replace(" ; ", ";").encode())

    assert feedback_import.status == FeedbackImport.Status.DONE
    feedback = Feedback.objects.get()
    assert (feedback.note, feedback.revenue, feedback.channel) == (
        "Called twice",
        Decimal("12.50"),
        CSV,
    )


def test_upload_counts_rows_and_keeps_the_file(buyer, buyer_user, deliveries):
    content = csv_bytes(
        ["event_id", "type"],
        [[d.event_id, "conversion"] for d in deliveries] + [["", ""]],
    )

    feedback_import = upload(
        buyer,
        SimpleUploadedFile("june.csv", content),
        user=buyer_user,
        filename="C:\\Users\\me\\june.csv",
    )

    stored = FeedbackImport.objects.get()
    assert stored == feedback_import
    assert feedback_import.public_id.startswith("imp_")
    assert (stored.filename, stored.total_rows, stored.status) == (
        "june.csv",
        5,  # the blank line is not a row
        FeedbackImport.Status.QUEUED,
    )
    assert bytes(stored.content) == content
    assert stored.user == buyer_user
    assert stored.percent == 0


def test_upload_queues_processing_after_commit(
    buyer, deliveries, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(
        "feedback.imports.tasks.process_feedback_import_task.delay",
        queued.append,
    )
    content = csv_bytes(["event_id", "type"], [[deliveries[0].event_id, "return"]])

    with django_capture_on_commit_callbacks(execute=True):
        feedback_import = upload(buyer, content)
        assert queued == []

    assert queued == [feedback_import.pk]


# Processing --------------------------------------------------------------------


def test_rows_are_imported_with_per_row_results(buyer, buyer_user, deliveries):
    content = csv_bytes(
        ["event_id", "reference", "type", "reason", "revenue", "quality_score"],
        [
            [deliveries[0].event_id, "", "conversion", "", "100", "5"],
            ["", deliveries[1].reference, "return", "Wrong number", "", ""],
            ["f" * 24, "", "return", "", "", ""],
            [deliveries[2].event_id, "", "conversion", "", "-3", ""],
            ["not-hex", "", "return", "", "", ""],
        ],
    )

    feedback_import = run(buyer, content, user=buyer_user)

    assert feedback_import.status == FeedbackImport.Status.DONE
    assert feedback_import.finished_at is not None
    assert (
        feedback_import.total_rows,
        feedback_import.processed_rows,
        feedback_import.succeeded_rows,
        feedback_import.refused_rows,
        feedback_import.percent,
    ) == (5, 5, 2, 3, 100)
    results = feedback_import_results(feedback_import=feedback_import)
    assert [(r.row_number, r.outcome, r.status) for r in results] == [
        (2, "success", "accepted"),
        (3, "success", "accepted"),
        (4, "failure", "not_found"),
        (5, "failure", "refused"),
        (6, "failure", "invalid"),
    ]
    assert results[1].reference == deliveries[1].reference
    assert results[2].reason == "No delivery of yours has this event id."
    assert results[2].feedback_id is None
    assert "revenue cannot be negative" in results[3].reason
    # Refused feedback about a known delivery is recorded, as from the API.
    refused = Feedback.objects.get(public_id=results[3].feedback_id)
    assert refused.outcome == Feedback.Outcome.FAILURE
    stored = Feedback.objects.filter(channel=CSV)
    assert stored.count() == 3
    assert set(stored.values_list("submitted_by", flat=True)) == {buyer_user.pk}
    accepted = Feedback.objects.get(public_id=results[0].feedback_id)
    assert (accepted.delivery, accepted.revenue, accepted.quality_score) == (
        deliveries[0],
        Decimal("100.00"),
        5,
    )


def test_results_page_and_filter_across_chunks(buyer, deliveries, settings):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 2
    rows = [[d.event_id, "conversion"] for d in deliveries]
    rows.insert(2, ["f" * 24, "conversion"])
    feedback_import = run(buyer, csv_bytes(["event_id", "type"], rows))

    assert (
        FeedbackImportChunk.objects.filter(feedback_import=feedback_import).count() == 3
    )
    every = feedback_import_results(feedback_import=feedback_import)
    assert [r.row_number for r in every] == [2, 3, 4, 5, 6, 7]
    page = feedback_import_results(feedback_import=feedback_import, offset=3, limit=2)
    assert [r.row_number for r in page] == [5, 6]
    refused = feedback_import_results(
        feedback_import=feedback_import, outcome="failure"
    )
    assert [r.row_number for r in refused] == [4]
    accepted = feedback_import_results(
        feedback_import=feedback_import, outcome="success", offset=2, limit=10
    )
    assert [r.row_number for r in accepted] == [5, 6, 7]


def test_returns_of_one_delivery_in_one_chunk_and_across_chunks(
    buyer, deliveries, settings
):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 2
    first, second = deliveries[0], deliveries[1]
    FeedbackFactory(delivery=second, kind=Kind.RETURN)  # returned before the file
    content = csv_bytes(
        ["event_id", "type"],
        [
            [first.event_id, "return"],
            [first.event_id, "return"],  # same chunk
            [first.event_id, "return"],  # next chunk
            [second.event_id, "return"],
        ],
    )

    feedback_import = run(buyer, content)

    outcomes = [
        (r.outcome, r.reason)
        for r in feedback_import_results(feedback_import=feedback_import)
    ]
    assert outcomes == [
        ("success", ""),
        ("failure", "This lead was already returned."),
        ("failure", "This lead was already returned."),
        ("failure", "This lead was already returned."),
    ]
    assert (
        Feedback.objects.filter(
            delivery=first, kind=Kind.RETURN, outcome="success"
        ).count()
        == 1
    )


def test_a_return_accepted_elsewhere_mid_chunk_loses_only_that_row(
    buyer, deliveries, monkeypatch
):
    import feedback.intake.pipeline as pipeline

    original = pipeline.store_copy
    raced = deliveries[1]

    def api_returns_it_first(pending, **kwargs):
        # The API accepts a return of the same delivery after the chunk looked
        # for earlier returns and before it writes: the constraint catches it.
        FeedbackFactory(delivery=raced, kind=Kind.RETURN)
        return original(pending, **kwargs)

    monkeypatch.setattr(pipeline, "store_copy", api_returns_it_first)
    content = csv_bytes(
        ["event_id", "type"], [[d.event_id, "return"] for d in deliveries[:3]]
    )

    feedback_import = run(buyer, content)

    results = feedback_import_results(feedback_import=feedback_import)
    assert [(r.status, r.reason) for r in results] == [
        ("accepted", ""),
        # Worded as when the earlier return was seen before writing.
        ("already_returned", "This lead was already returned."),
        ("accepted", ""),
    ]
    stored = Feedback.objects.filter(channel=CSV)
    assert stored.count() == 3  # the loser is recorded as refused, as by the API
    assert (feedback_import.succeeded_rows, feedback_import.refused_rows) == (2, 1)
    assert stored.get(delivery=raced).outcome == Feedback.Outcome.FAILURE
    assert str(stored.get(delivery=raced).public_id) == results[1].feedback_id


def test_a_row_with_more_values_than_columns_is_refused(buyer, deliveries):
    content = (
        f"event_id,type\r\n{deliveries[0].event_id},conversion,extra\r\n"
        f"{deliveries[1].event_id},conversion,,\r\n"
    ).encode()

    feedback_import = run(buyer, content)

    results = feedback_import_results(feedback_import=feedback_import)
    assert results[0].outcome == "failure"
    assert "3 values but the header 2 columns" in results[0].reason
    assert results[1].outcome == "success"  # trailing empty cells are harmless


def test_notifications_are_created_for_accepted_rows(buyer, deliveries):
    source = deliveries[0].source
    FeedbackConfig.objects.create(
        source=source,
        kind=Kind.CONVERSION,
        enabled=True,
        method=FeedbackConfig.Method.JSON,
        url="https://crm.example.com/feedback",
    )
    content = csv_bytes(
        ["event_id", "type"],
        [[deliveries[0].event_id, "conversion"], ["f" * 24, "conversion"]],
    )

    run(buyer, content)

    notification = Notification.objects.get()
    assert notification.feedback.delivery == deliveries[0]
    assert notification.status == Notification.Status.PENDING


def test_notifications_match_what_the_api_writes(buyer):
    source = SourceFactory()
    for name, criteria in (
        ("all", None),
        (
            "big",
            {
                "rules": [
                    {"lhv": "feedback.revenue", "op": "is greater than", "rhv": "100"}
                ]
            },
        ),
    ):
        FeedbackConfig.objects.create(
            source=source,
            kind=Kind.CONVERSION,
            enabled=True,
            method=FeedbackConfig.Method.JSON,
            url=f"https://crm.example.com/{name}",
            criteria=criteria,
        )
    # A batch config's rows wait for their period's file instead.
    FeedbackConfig.objects.create(
        source=source,
        kind=Kind.CONVERSION,
        enabled=True,
        method=FeedbackConfig.Method.BATCH,
        batch_every=FeedbackConfig.BatchEvery.DAY,
        batch_at=time(6, 0),
        batch_timezone="UTC",
        batch_transport=FeedbackConfig.Transport.FTP,
        batch_host="files.example.com",
        batch_file_name="conversions.csv",
    )
    by_api, by_csv = DeliveryEventFactory.create_batch(
        2, buyer=buyer, lead__source=source, source=source
    )
    feedback_receive(
        buyer=buyer,
        data={"event_id": by_api.event_id, "type": "conversion", "revenue": "50"},
        channel=Feedback.Channel.API,
    )
    run(
        buyer,
        csv_bytes(
            ["event_id", "type", "revenue"], [[by_csv.event_id, "conversion", "50"]]
        ),
    )

    def written(delivery):
        return sorted(
            (n.config.url, n.status, n.reason, n.next_attempt_at is None)
            for n in Notification.objects.filter(feedback__delivery=delivery)
        )

    assert written(by_csv) == written(by_api)
    assert [status for _, status, _, _ in written(by_csv)] == [
        "batched",
        "pending",
        "skipped",
    ]
    pending = Notification.objects.get(feedback__delivery=by_csv, status="pending")
    assert pending.public_id.startswith("msg_")
    assert pending.lease_token is None  # left to the sweep


# Same verdict as feedback_receive ----------------------------------------------

TOMORROW = "2099-01-01T00:00:00Z"


def _setup_policy_disabled(buyer, source):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.CONVERSION, enabled=False)


def _setup_short_window(buyer, source):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.RETURN, max_age_days=1)


def _setup_reasons(buyer, source):
    source.return_reasons = ["Wrong number", "Disconnected"]
    source.save()


def _setup_no_conversions(buyer, source):
    source.accepts_conversion = False
    source.save()


def _setup_rules(buyer, source):
    BuyerPolicy.objects.create(
        buyer=buyer,
        kind=Kind.RETURN,
        rules={"rules": [{"lhv": "feedback.reason", "op": "is not blank"}]},
    )


def _setup_lead_rule(buyer, source):
    # Reads the lead's fields: the bulk path must load leads for it.
    BuyerPolicy.objects.create(
        buyer=buyer,
        kind=Kind.CONVERSION,
        rules={"rules": [{"lhv": "lead.state", "op": "is equal to", "rhv": "OH"}]},
    )


EQUIVALENCE_CASES = {
    "lead rule": (_setup_lead_rule, {"type": "conversion"}),
    "by reference": ("reference", {"type": "conversion"}),
    "ambiguous reference": ("ambiguous", {"type": "conversion"}),
    "accepted conversion": (None, {"type": "conversion", "revenue": "10"}),
    "kind disabled": (_setup_policy_disabled, {"type": "conversion"}),
    "return too old": (_setup_short_window, {"type": "return"}),
    "reason not allowed": (_setup_reasons, {"type": "return", "reason": "Bored"}),
    "reason in other case": (
        _setup_reasons,
        {"type": "return", "reason": "wrong NUMBER"},
    ),
    "kind not accepted": (_setup_no_conversions, {"type": "conversion"}),
    "rule set": (_setup_rules, {"type": "return"}),
    "negative revenue": (None, {"type": "conversion", "revenue": "-1"}),
    "revenue 3 places": (None, {"type": "conversion", "revenue": "1.234"}),
    "revenue text": (None, {"type": "conversion", "revenue": "ten"}),
    "revenue huge": (None, {"type": "conversion", "revenue": "1e12"}),
    "quality 0": (None, {"type": "conversion", "quality_score": "0"}),
    "quality 4.5": (None, {"type": "conversion", "quality_score": "4.5"}),
    "occurred in future": (None, {"type": "conversion", "occurred_at": TOMORROW}),
    "occurred garbled": (None, {"type": "conversion", "occurred_at": "monday"}),
    "occurred before delivery": (
        None,
        {"type": "conversion", "occurred_at": "2001-01-01T00:00:00Z"},
    ),
    "reason too long": (None, {"type": "conversion", "reason": "x" * 256}),
    "note too long": (None, {"type": "conversion", "note": "x" * 2001}),
    "unknown type": (None, {"type": "refund"}),
    "no type": (None, {"type": ""}),
    "outcome code": (None, {"outcome_code": "bad_info"}),
    "unknown outcome code": (None, {"outcome_code": "maybe"}),
    "code against type": (None, {"type": "conversion", "outcome_code": "bad_info"}),
    "already returned": ("returned", {"type": "return"}),
    "unknown event": ("unknown", {"type": "return"}),
    "bad event id": ("garbled", {"type": "return"}),
}
# What the API answers, so the comparison cannot pass on two identical mistakes.
EXPECTED_STATUS = {
    "lead rule": "refused",
    "by reference": "accepted",
    "ambiguous reference": "invalid",
    "accepted conversion": "accepted",
    "kind disabled": "forbidden",
    "return too old": "refused",
    "reason in other case": "accepted",
    "rule set": "refused",
    "already returned": "already_returned",
    "unknown event": "not_found",
    "bad event id": "invalid",
    "outcome code": "accepted",
    "occurred before delivery": "refused",
}
CSV_HEADER = [
    "event_id",
    "type",
    "outcome_code",
    "reason",
    "revenue",
    "quality_score",
    "occurred_at",
    "notes",
]


@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
def test_every_rule_gives_the_verdict_of_feedback_receive(buyer, case):
    setup, values = EQUIVALENCE_CASES[case]
    source = SourceFactory()
    if callable(setup):
        setup(buyer, source)
    delivered_at = timezone.now() - timedelta(days=3)
    by_api, by_csv = DeliveryEventFactory.create_batch(
        2, buyer=buyer, lead__source=source, source=source, delivered_at=delivered_at
    )
    identify = {d.pk: d.event_id for d in (by_api, by_csv)}
    column = "event_id"
    if setup in ("reference", "ambiguous"):
        column = "reference"
        identify = {d.pk: d.reference for d in (by_api, by_csv)}
        if setup == "ambiguous":
            for delivery in (by_api, by_csv):
                DeliveryEventFactory(buyer=buyer, reference=delivery.reference)
    if setup == "returned":
        for delivery in (by_api, by_csv):
            FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
    elif setup == "unknown":
        identify = {by_api.pk: "a" * 24, by_csv.pk: "b" * 24}
    elif setup == "garbled":
        identify = {by_api.pk: "zz", by_csv.pk: "zz"}
    before = set(Feedback.objects.values_list("pk", flat=True))

    api = feedback_receive(
        buyer=buyer,
        data={column: identify[by_api.pk], **values},
        channel=Feedback.Channel.API,
    )
    cells = {"note": "notes"}
    row = {cells.get(k, k): v for k, v in values.items()}
    header = [column, *CSV_HEADER[1:]]
    content = csv_bytes(
        header, [[identify[by_csv.pk]] + [row.get(name, "") for name in header[1:]]]
    )
    feedback_import = run(buyer, content)
    [result] = feedback_import_results(feedback_import=feedback_import)

    assert api.status == EXPECTED_STATUS.get(case, api.status)
    assert result.status == api.status.value
    assert result.outcome == ("success" if api.status == "accepted" else "failure")
    assert result.reason == ("" if api.status == "accepted" else api.reason)
    stored = Feedback.objects.exclude(pk__in=before)
    by_channel = {f.channel: f for f in stored}
    assert set(by_channel) == ({"api", "csv"} if api.feedback else set())
    if api.feedback:
        api_row, csv_row = by_channel["api"], by_channel["csv"]
        fields = ("kind", "outcome", "outcome_reason", "reason", "revenue", "note")
        assert [getattr(csv_row, f) for f in fields] == [
            getattr(api_row, f) for f in fields
        ]
        assert str(csv_row.public_id) == result.feedback_id


# Re-uploads and resuming -------------------------------------------------------


def test_the_same_file_uploaded_again_returns_the_first_import(buyer, deliveries):
    content = csv_bytes(
        ["event_id", "type"], [[d.event_id, "conversion"] for d in deliveries]
    )
    first = run(buyer, content)

    again, created = feedback_import_upload(
        buyer=buyer, user=None, file=content, filename="copy.csv"
    )
    feedback_import_process(import_id=again.pk)

    assert not created
    assert again.pk == first.pk
    assert Feedback.objects.count() == 5
    assert FeedbackImport.objects.count() == 1


def test_another_buyer_may_upload_the_same_bytes(buyer, other_buyer, deliveries):
    content = csv_bytes(["event_id", "type"], [[deliveries[0].event_id, "return"]])
    mine = run(buyer, content)
    theirs = run(other_buyer, content)

    assert mine.pk != theirs.pk
    assert (mine.succeeded_rows, theirs.succeeded_rows) == (1, 0)
    [result] = feedback_import_results(feedback_import=theirs)
    assert result.status == "not_found"  # another buyer's delivery is unknown


def test_a_resumed_import_skips_the_chunks_it_recorded(buyer, deliveries, settings):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 2
    content = csv_bytes(
        ["event_id", "type"], [[d.event_id, "conversion"] for d in deliveries]
    )
    feedback_import = upload(buyer, content)
    # A worker that processed the first chunk, then died: its lease ran out.
    calls = []
    original = FeedbackImportChunk.objects.create

    def die_after_first_chunk(**kwargs):
        calls.append(kwargs["index"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # not caught by the service, like a SIGKILL
        return original(**kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FeedbackImportChunk.objects, "create", die_after_first_chunk)
        with pytest.raises(KeyboardInterrupt):
            feedback_import_process(import_id=feedback_import.pk)
    feedback_import.refresh_from_db()
    assert (feedback_import.status, feedback_import.processed_rows) == ("processing", 2)
    assert Feedback.objects.count() == 2
    # Another worker while the lease holds: not its turn.
    assert feedback_import_process(import_id=feedback_import.pk) is None
    FeedbackImport.objects.filter(pk=feedback_import.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # The chunk size setting changing in between must not move the boundaries.
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 3

    feedback_import_process(import_id=feedback_import.pk)

    feedback_import.refresh_from_db()
    assert feedback_import.status == FeedbackImport.Status.DONE
    assert (feedback_import.processed_rows, feedback_import.succeeded_rows) == (5, 5)
    assert Feedback.objects.count() == 5
    assert sorted(Feedback.objects.values_list("delivery_id", flat=True)) == sorted(
        d.pk for d in deliveries
    )
    rows = [
        r.row_number for r in feedback_import_results(feedback_import=feedback_import)
    ]
    assert rows == [2, 3, 4, 5, 6]


def test_a_worker_that_lost_its_lease_writes_nothing(buyer, deliveries, settings):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 2
    content = csv_bytes(
        ["event_id", "type"], [[d.event_id, "conversion"] for d in deliveries]
    )
    feedback_import = upload(buyer, content)
    original = FeedbackImportChunk.objects.create

    def taken_over(**kwargs):
        # Another worker takes the import over while this one works on chunk 1.
        if kwargs["index"] == 1:
            FeedbackImport.objects.filter(pk=feedback_import.pk).update(
                lease_token="00000000-0000-0000-0000-000000000001"
            )
        return original(**kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FeedbackImportChunk.objects, "create", taken_over)
        assert feedback_import_process(import_id=feedback_import.pk) is None

    # Chunk 1 was written before the takeover in this test; chunk 2 was not.
    assert FeedbackImportChunk.objects.count() == 2
    assert Feedback.objects.count() == 4


def test_the_sweep_queues_stale_and_abandoned_imports(buyer, deliveries, monkeypatch):
    queued = []
    monkeypatch.setattr(
        "feedback.imports.tasks.process_feedback_import_task.delay",
        queued.append,
    )
    make = lambda i: upload(  # noqa: E731
        buyer, csv_bytes(["event_id", "type"], [[deliveries[i].event_id, "return"]])
    )
    fresh, lost, abandoned, working, done = (make(i) for i in range(5))
    long_ago = timezone.now() - timedelta(hours=1)
    FeedbackImport.objects.filter(pk=lost.pk).update(updated_at=long_ago)
    FeedbackImport.objects.filter(pk=abandoned.pk).update(
        status="processing", lease_expires_at=long_ago, updated_at=long_ago
    )
    FeedbackImport.objects.filter(pk=working.pk).update(
        status="processing",
        lease_expires_at=timezone.now() + timedelta(minutes=1),
        updated_at=long_ago,
    )
    FeedbackImport.objects.filter(pk=done.pk).update(status="done", updated_at=long_ago)

    assert feedback_imports_sweep() == 2

    assert sorted(queued) == sorted([lost.pk, abandoned.pk])
    assert fresh.pk not in queued


def test_an_unexpected_error_fails_the_import_and_a_reupload_resumes_it(
    buyer, deliveries, monkeypatch
):
    content = csv_bytes(["event_id", "type"], [[deliveries[0].event_id, "return"]])
    feedback_import = upload(buyer, content)

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("feedback.imports.services.feedback_receive_many", broken)
    feedback_import_process(import_id=feedback_import.pk)
    feedback_import.refresh_from_db()
    assert feedback_import.status == FeedbackImport.Status.FAILED
    assert feedback_import.error == "Processing stopped: RuntimeError."
    monkeypatch.undo()

    again = upload(buyer, content)
    assert (again.pk, again.status, again.error) == (feedback_import.pk, "queued", "")
    feedback_import_process(import_id=again.pk)
    again.refresh_from_db()
    assert (again.status, again.succeeded_rows) == ("done", 1)


# Reading -----------------------------------------------------------------------


def test_refused_csv_has_the_original_cells_row_and_reason(buyer, deliveries):
    content = csv_bytes(
        ["Event_ID", "type", "reason"],
        [
            [deliveries[0].event_id, "conversion", ""],
            ["f" * 24, "return", '=HYPERLINK("http://evil")'],
            [deliveries[1].event_id, "refund", "x"],
        ],
    )
    feedback_import = run(buyer, content)

    text = feedback_import_refused_csv(feedback_import=feedback_import)

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Event_ID", "type", "reason", "row", "refusal_reason"]
    assert rows[1] == [
        "f" * 24,
        "return",
        '\'=HYPERLINK("http://evil")',  # formula-safe
        "3",
        "No delivery of yours has this event id.",
    ]
    assert rows[2][:4] == [deliveries[1].event_id, "refund", "x", "4"]
    assert "type must be one of" in rows[2][4]
    assert len(rows) == 3


def test_the_refused_report_can_be_uploaded_again_after_fixing_it(buyer, deliveries):
    content = csv_bytes(["event_id", "type"], [[deliveries[0].event_id, "refund"]])
    report = feedback_import_refused_csv(feedback_import=run(buyer, content))

    fixed = report.replace("refund", "conversion").encode()
    second = run(buyer, fixed)

    assert (second.status, second.succeeded_rows) == ("done", 1)
    assert Feedback.objects.get().delivery == deliveries[0]


def test_an_import_is_only_found_for_its_buyer(buyer, other_buyer, deliveries):
    content = csv_bytes(["event_id", "type"], [[deliveries[0].event_id, "return"]])
    feedback_import = upload(buyer, content)

    found = get_feedback_import_for_buyer(
        buyer=buyer, public_id=feedback_import.public_id
    )
    assert found == feedback_import
    with pytest.raises(Http404):
        get_feedback_import_for_buyer(
            buyer=other_buyer, public_id=feedback_import.public_id
        )
    with pytest.raises(Http404):
        get_feedback_import_for_buyer(buyer=buyer, public_id="imp_nope")
