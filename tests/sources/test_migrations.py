"""Data migrations of source configs, run against rows that exist before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from sources.models import FeedbackConfig, FieldMapping, Kind
from sources.services import feedback_config_build_request
from tests.factories import SourceFactory


def migrate(target: list[tuple[str, str]]) -> None:
    MigrationExecutor(connection).migrate(target)


def config_with(method: str, targets: list[str]) -> FeedbackConfig:
    config = FeedbackConfig.objects.create(
        source=SourceFactory(),
        kind=Kind.RETURN,
        method=method,
        url="https://crm.example.net/returns",
    )
    for position, target in enumerate(targets):
        FieldMapping.objects.create(
            config=config, position=position, target=target, value=target.strip()
        )
    return config


def targets_of(config: FeedbackConfig) -> list[str]:
    return [m.target for m in config.mappings.order_by("position")]


@pytest.mark.django_db(transaction=True)
def test_xml_configs_saved_before_keep_sending_inside_feedback():
    one_root = config_with("xml", ["lead@id", "lead.fname", " lead.lname"])
    two_roots = config_with("xml", ["event_id", "reason"])
    document_attribute = config_with("xml", ["@version", "lead.fname"])
    json_config = config_with("json", ["lead.fname", "lead.lname"])

    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    migrate([("sources", "0006_feedbackconfig_s3")])
    try:
        migrate([("sources", "0007_xml_configs_keep_their_feedback_root")])
    finally:
        migrate(leaves)

    assert targets_of(one_root) == [
        "feedback.lead@id",
        "feedback.lead.fname",
        "feedback.lead.lname",
    ]
    assert targets_of(two_roots) == ["event_id", "reason"]
    assert targets_of(document_attribute) == ["@version", "lead.fname"]
    assert targets_of(json_config) == ["lead.fname", "lead.lname"]
    one_root.refresh_from_db()
    request = feedback_config_build_request(
        config=one_root, variables={}, message_id="msg_1"
    )
    assert request.body.endswith(
        b'<feedback><lead id="lead@id"><fname>lead.fname</fname>'
        b"<lname>lead.lname</lname></lead></feedback>"
    )
