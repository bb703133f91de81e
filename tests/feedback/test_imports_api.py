"""The CSV import endpoints: POST /api/v1/feedback/imports and reading an import."""

import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from feedback.imports.models import FeedbackImport
from feedback.imports.services import feedback_import_process
from feedback.models import Feedback
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/feedback/imports"


def csv_bytes(rows, header=("event_id", "type", "reason")):
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue().encode()


@pytest.fixture
def deliveries(buyer):
    return DeliveryEventFactory.create_batch(
        3, buyer=buyer, delivered_at=timezone.now() - timedelta(days=2)
    )


@pytest.fixture
def content(deliveries):
    return csv_bytes(
        [
            [deliveries[0].event_id, "conversion", ""],
            [deliveries[1].event_id, "return", "Wrong number"],
            ["f" * 24, "return", ""],
            [deliveries[2].event_id, "refund", "=cmd"],
        ]
    )


def post_file(client, content, name="june.csv"):
    return client.post(
        URL, {"file": SimpleUploadedFile(name, content, "text/csv")}, format="multipart"
    )


def test_multipart_upload_answers_202_with_the_import(buyer_client, buyer, content):
    response = post_file(buyer_client, content)

    assert response.status_code == 202, response.content
    body = response.json()
    feedback_import = FeedbackImport.objects.get()
    assert body["id"] == feedback_import.public_id
    assert body["status"] == "queued"
    assert (body["filename"], body["total_rows"], body["percent"]) == ("june.csv", 4, 0)
    assert body["links"] == {
        "self": f"{URL}/{feedback_import.public_id}",
        "refused_csv": f"{URL}/{feedback_import.public_id}/refused.csv",
    }
    assert feedback_import.buyer == buyer
    assert feedback_import.api_key is not None


def test_text_csv_body_upload_with_a_filename(buyer_client, content):
    response = buyer_client.generic(
        "POST", f"{URL}?filename=crm-export.csv", content, content_type="text/csv"
    )

    assert response.status_code == 202, response.content
    assert response.json()["filename"] == "crm-export.csv"
    assert bytes(FeedbackImport.objects.get().content) == content


def test_the_same_file_again_answers_200_with_the_first_import(buyer_client, content):
    first = post_file(buyer_client, content).json()
    feedback_import_process(import_id=FeedbackImport.objects.get().pk)

    again = post_file(buyer_client, content, name="again.csv")

    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "done"
    # The conversion and the return; an unknown event and type store nothing.
    assert Feedback.objects.count() == 2


def test_progress_counts_and_row_results(buyer_client, content, deliveries):
    imported = post_file(buyer_client, content).json()
    feedback_import_process(import_id=FeedbackImport.objects.get().pk)

    body = buyer_client.get(f"{URL}/{imported['id']}").json()

    assert (body["status"], body["percent"]) == ("done", 100)
    assert (body["processed_rows"], body["succeeded_rows"], body["refused_rows"]) == (
        4,
        2,
        2,
    )
    assert body["finished_at"] is not None
    results = body["results"]
    assert (results["count"], results["offset"], results["limit"]) == (4, 0, 100)
    assert [r["row_number"] for r in results["items"]] == [2, 3, 4, 5]
    first = results["items"][0]
    assert first["outcome"] == "success"
    assert first["event_id"] == deliveries[0].event_id
    assert Feedback.objects.filter(public_id=first["feedback_id"]).exists()
    assert results["items"][2] == {
        "row_number": 4,
        "outcome": "failure",
        "status": "not_found",
        "reason": "No delivery of yours has this event id.",
        "feedback_id": None,
        "event_id": "f" * 24,
        "reference": "",
    }

    refused = buyer_client.get(
        f"{URL}/{imported['id']}", {"outcome": "failure", "limit": 1, "offset": 1}
    ).json()["results"]
    assert refused["count"] == 2
    assert [r["row_number"] for r in refused["items"]] == [5]


def test_refused_csv_download(buyer_client, content, deliveries):
    imported = post_file(buyer_client, content).json()
    feedback_import_process(import_id=FeedbackImport.objects.get().pk)

    response = buyer_client.get(imported["links"]["refused_csv"])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="{imported["id"]}-refused.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["event_id", "type", "reason", "row", "refusal_reason"]
    assert [row[3] for row in rows[1:]] == ["4", "5"]
    assert rows[2][2] == "'=cmd"  # formula-safe


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"event_id,type\r\n", "no rows"),
        (b"reason,type\r\nx,return\r\n", "event_id or a reference column"),
        (b"event_id,type,colour\r\n1,return,red\r\n", "Unknown column(s): colour"),
        (b"event_id,type\r\n\xc3\x28,return\r\n", "not UTF-8"),
    ],
)
def test_a_bad_file_answers_422_naming_the_problem(buyer_client, content, message):
    response = post_file(buyer_client, content)

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["errors"][0]["field"] == "file"
    assert message in body["errors"][0]["message"]
    assert not FeedbackImport.objects.exists()


def test_a_file_over_the_limit_answers_413(buyer_client, settings):
    settings.LEADBACK_IMPORT_MAX_BYTES = 100
    big = csv_bytes([["a" * 24, "return", "x" * 50]] * 3)

    multipart = post_file(buyer_client, big)
    body = buyer_client.generic("POST", URL, big, content_type="text/csv")

    assert multipart.status_code == 413
    assert body.status_code == 413
    assert "larger than" in body.json()["detail"]


def test_no_file_and_other_media_types_are_4xx(buyer_client):
    assert buyer_client.post(URL, {}, format="multipart").status_code == 422
    assert buyer_client.generic(
        "POST", URL, b"", content_type="text/csv"
    ).status_code in {
        415,
        422,
    }
    response = buyer_client.post(URL, {"file": "x"}, format="json")
    assert response.status_code == 415


def test_another_buyers_import_is_not_found(buyer_client, other_buyer_client, content):
    imported = post_file(buyer_client, content).json()

    for path in (imported["links"]["self"], imported["links"]["refused_csv"]):
        response = other_buyer_client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
    assert buyer_client.get(f"{URL}/imp_{'0' * 24}").status_code == 404
    # A NUL never reaches the database: refused as input, whoever's id it is.
    refused = buyer_client.get(f"{URL}/imp_%00")
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "public_id"


def test_keys_other_than_buyer_keys_are_refused(client, integration_client, content):
    assert post_file(integration_client, content).status_code == 403
    assert client.post(URL).status_code == 401
    assert client.get(f"{URL}/imp_{'0' * 24}").status_code == 401


def test_bad_paging_answers_422(buyer_client, content):
    imported = post_file(buyer_client, content).json()

    for query in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"outcome": "x"}):
        response = buyer_client.get(imported["links"]["self"], query)
        assert response.status_code == 422, query
