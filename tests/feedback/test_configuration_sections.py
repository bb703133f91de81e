"""Sections: other packages' lists in the configuration document."""

from collections.abc import Sequence

import pytest

from feedback.configuration import (
    REDACTED,
    ConfigurationError,
    Section,
    config_export,
    config_import,
    config_schema,
    config_validate,
)
from feedback.configuration import document as document_module
from feedback.configuration import sections as sections_module
from sources.configuration.base import Document, JsonPath, Problem, object_schema

pytestmark = pytest.mark.django_db


class Store:
    """A section's rows, kept in memory for the test."""

    def __init__(self) -> None:
        self.items: dict[str, Document] = {}
        self.saves: list[str] = []

    def section(self) -> Section:
        def problems(
            item: Document, path: JsonPath, document: Document
        ) -> list[Problem]:
            sources = {s.get("slug") for s in document.get("sources", [])}
            if item.get("source") and item["source"] not in sources:
                return [Problem((*path, "source"), f"no source {item['source']!r}")]
            return []

        def current(slugs: Sequence[str], lock: bool) -> dict[str, Document]:
            return {
                slug: dict(self.items[slug]) for slug in slugs if slug in self.items
            }

        def save(item: Document) -> None:
            self.saves.append(item["slug"])
            self.items[item["slug"]] = dict(item)

        return Section(
            key="widgets",
            entity="widget",
            label="Widgets",
            item_schema=lambda: object_schema(
                {
                    "slug": {"type": "string", "minLength": 1},
                    "size": {"type": "integer", "minimum": 1},
                    "source": {"type": "string"},
                    "secret": {"type": "string"},
                },
                required=["slug"],
            ),
            problems=problems,
            export=lambda: [dict(self.items[s]) for s in sorted(self.items)],
            current=current,
            save=save,
            normalise=lambda item: {"size": 1, "secret": "", **item},
            secret_paths=(("secret",),),
        )


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    store = Store()
    monkeypatch.setattr(sections_module, "_SECTIONS", {"widgets": store.section()})
    document_module._validator.cache_clear()
    yield store
    document_module._validator.cache_clear()


def test_the_schema_lists_the_section(store: Store) -> None:
    assert config_schema()["properties"]["widgets"]["type"] == "array"


def test_an_item_is_created_then_unchanged_then_updated(store: Store) -> None:
    report = config_import(document={"widgets": [{"slug": "w1"}]}, dry_run=False)
    assert [str(change) for change in report.changes] == ["widget w1: created"]
    assert store.items["w1"] == {"slug": "w1", "size": 1, "secret": ""}
    assert "Widgets: 1 created, 0 updated, 0 unchanged." in report.summary()

    report = config_import(
        document={"widgets": [{"slug": "w1", "size": 1}]}, dry_run=False
    )
    assert [str(change) for change in report.changes] == ["widget w1: unchanged"]

    report = config_import(
        document={"widgets": [{"slug": "w1", "size": 3}]}, dry_run=True
    )
    assert [str(change) for change in report.changes] == ["widget w1: updated (size)"]
    assert store.items["w1"]["size"] == 1  # a check writes nothing
    assert store.saves == ["w1"]


def test_schema_slug_and_item_problems_have_paths(store: Store) -> None:
    problems = config_validate(
        document={
            "widgets": [
                {"slug": "w1", "size": 0},
                {"slug": "w1", "source": "nowhere"},
                {"slug": "bad slug", "colour": "red"},
            ]
        }
    )
    assert [str(problem) for problem in problems] == [
        "$.widgets[0].size: must be at least 1",
        "$.widgets[1].slug: duplicate slug 'w1' (first used at $.widgets[0].slug)",
        "$.widgets[1].source: no source 'nowhere'",
        "$.widgets[2].colour: unknown key (allowed: slug, size, source, secret)",
        "$.widgets[2].slug: must contain only letters, digits, hyphens and underscores",
    ]
    with pytest.raises(ConfigurationError):
        config_import(document={"widgets": [{"slug": "w1", "size": 0}]}, dry_run=False)
    assert store.saves == []


def test_secrets_are_redacted_on_export_and_kept_on_import(store: Store) -> None:
    config_import(
        document={"widgets": [{"slug": "w1", "secret": "s3cret"}]}, dry_run=False
    )
    exported = config_export()
    assert exported["widgets"] == [{"slug": "w1", "size": 1, "secret": REDACTED}]
    assert config_export(include_secrets=True)["widgets"][0]["secret"] == "s3cret"

    report = config_import(document=exported, dry_run=False)
    assert [str(change) for change in report.changes] == ["widget w1: unchanged"]
    assert store.items["w1"]["secret"] == "s3cret"

    with pytest.raises(ConfigurationError) as refused:
        config_import(
            document={"widgets": [{"slug": "w2", "secret": REDACTED}]}, dry_run=False
        )
    assert "$.widgets[0].secret" in str(refused.value)


def test_an_empty_section_stays_out_of_the_export(store: Store) -> None:
    assert "widgets" not in config_export()
