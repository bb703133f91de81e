"""The correction endpoints against their OpenAPI schema, with generated input
(schemathesis): every answer is documented, and every error is a 4xx with a
problem body, never a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from config.wsgi import application
from tests.factories import DeliveryEventFactory, FeedbackFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(
    path_regex=r"^/api/v1/feedback/\{feedback_id\}/(retract|amend)$"
)


@pytest.fixture
def feedback_of_buyer(buyer):
    return FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_corrections_answer_as_documented(case, buyer_key, feedback_of_buyer):
    _key, raw = buyer_key
    # About half the time a real feedback of the buyer's, so the body is read.
    if case.path_parameters and len(str(case.body)) % 2:
        case.path_parameters["feedback_id"] = str(feedback_of_buyer.public_id)
    # The buyer's key, in X-API-Key only (not the bearer scheme beside it).
    case.headers = {"X-API-Key": raw}
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.content, "an error needs a body"
    # The answer's body matches the schema. (Every API error is
    # application/problem+json, which the schema documents as JSON; and the
    # status and authentication checks probe requests without a key, whose
    # 401 the API's schema leaves to its authentication section.)
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.response_schema_conformance,
        ],
    )
