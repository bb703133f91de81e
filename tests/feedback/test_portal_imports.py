"""The portal's CSV upload: the form, the progress fragment the page polls, the
per-row results and the refused-rows download."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from feedback.imports.models import FeedbackImport
from feedback.imports.services import feedback_import_process
from feedback.models import Feedback
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def portal(client, buyer_user):
    client.force_login(buyer_user)
    return client


def csv_file(header, rows, name="feedback.csv"):
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return SimpleUploadedFile(name, stream.getvalue().encode(), "text/csv")


@pytest.fixture
def deliveries(buyer):
    return DeliveryEventFactory.create_batch(
        3, buyer=buyer, delivered_at=timezone.now() - timedelta(days=2)
    )


def upload(portal, file):
    response = portal.post("/portal/imports/", {"file": file})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def test_upload_queues_an_import_then_shows_progress_and_results(
    portal, buyer, buyer_user, deliveries, other_buyer
):
    theirs = DeliveryEventFactory(buyer=other_buyer)
    location = upload(
        portal,
        csv_file(
            ["Event_ID", "TYPE", "Reason", "Revenue", "Notes"],
            [
                [deliveries[0].event_id, "conversion", "", "100.00", "Signed"],
                [deliveries[1].event_id, "return", "Wrong number", "", ""],
                [theirs.event_id, "return", "Duplicate", "", ""],
                [deliveries[2].event_id, "conversion", "", "-3", ""],
            ],
        ),
    )
    feedback_import = FeedbackImport.objects.get()
    assert location == f"/portal/imports/{feedback_import.public_id}/"
    assert feedback_import.user == buyer_user
    assert feedback_import.buyer == buyer

    page = portal.get(location).content.decode()
    assert 'data-finished="false"' in page
    progress_url = f"/portal/imports/{feedback_import.public_id}/progress/"
    assert f'data-progress-url="{progress_url}"' in page
    assert 'value="0"' in page

    feedback_import_process(import_id=feedback_import.pk)
    fragment = portal.get(f"{location}progress/")
    assert fragment["Cache-Control"] == "no-store"
    body = fragment.content.decode()
    assert 'data-finished="true"' in body
    assert '<progress id="import-bar" class="progress" max="100" value="100">' in body
    assert "2 accepted · 2 refused" in body
    assert body.count('class="ok"') == 2
    assert body.count('class="refused"') == 2
    assert "No delivery of yours has this event id." in body
    assert "revenue cannot be negative." in body
    assert "<html" not in body  # a fragment, not a page

    feedback = Feedback.objects.get(delivery=deliveries[0])
    assert (feedback.channel, feedback.note, str(feedback.revenue)) == (
        "csv",
        "Signed",
        "100.00",
    )

    download = portal.get(f"{location}refused.csv")
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in download["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[0] == [
        "Event_ID",
        "TYPE",
        "Reason",
        "Revenue",
        "Notes",
        "row",
        "refusal_reason",
    ]
    assert [row[5] for row in rows[1:]] == ["4", "5"]
    assert rows[1][6] == "No delivery of yours has this event id."


def test_the_same_file_again_shows_the_first_import_and_adds_nothing(
    portal, deliveries
):
    header = ["event_id", "type"]
    rows = [[deliveries[0].event_id, "conversion"]]
    first = upload(portal, csv_file(header, rows))
    feedback_import_process(import_id=FeedbackImport.objects.get().pk)
    response = portal.post(
        "/portal/imports/",
        {"file": csv_file(header, rows, name="again.csv")},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == first
    assert "You uploaded this file before" in response.content.decode()
    assert FeedbackImport.objects.count() == 1
    assert Feedback.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"type,reason\r\nreturn,x\r\n", "event_id or a reference column"),
        (b"event_id,type,colour\r\nabc,return,red\r\n", "Unknown column(s): colour"),
        (b"event_id,type\r\n", "no rows"),
    ],
)
def test_a_bad_file_is_refused_on_the_form_naming_the_problem(portal, content, message):
    response = portal.post(
        "/portal/imports/", {"file": SimpleUploadedFile("bad.csv", content)}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not FeedbackImport.objects.exists()


def test_no_file_is_a_form_error(portal):
    response = portal.post("/portal/imports/", {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_the_upload_page_lists_only_the_buyers_imports(
    portal, buyer, other_buyer, deliveries
):
    from feedback.imports.services import feedback_import_create

    feedback_import_create(
        buyer=other_buyer,
        user=None,
        file=b"event_id,type\r\nx,return\r\n",
        filename="theirs.csv",
    )
    upload(portal, csv_file(["event_id", "type"], [[deliveries[0].event_id, "status"]]))
    body = portal.get("/portal/imports/").content.decode()
    assert "feedback.csv" in body
    assert "theirs.csv" not in body
    assert re.search(r"<label for=\"id_file\">CSV file", body)


def test_progress_fragment_reads_a_fixed_number_of_queries(
    portal, deliveries, django_assert_max_num_queries, settings
):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 1
    location = upload(
        portal,
        csv_file(["event_id", "type"], [[d.event_id, "status"] for d in deliveries]),
    )
    feedback_import_process(import_id=FeedbackImport.objects.get().pk)
    # Session, user, buyers, the import, its chunk list, then one read per chunk
    # of results shown (capped by the page's limit, not by the file's size).
    with django_assert_max_num_queries(5 + len(deliveries)):
        response = portal.get(f"{location}progress/")
    assert response.content.decode().count('class="ok"') == 3


def test_a_file_over_the_limit_is_refused_on_the_form(portal, settings, deliveries):
    settings.LEADBACK_IMPORT_MAX_BYTES = 1024 * 1024
    rows = [[deliveries[0].event_id, "status"]] * 40_000
    response = portal.post(
        "/portal/imports/", {"file": csv_file(["event_id", "type"], rows)}
    )
    assert response.status_code == 400
    assert "The file is larger than 1 MB" in response.content.decode()
    assert not FeedbackImport.objects.exists()
