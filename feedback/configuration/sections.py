"""More top-level lists in the configuration document, owned by other packages.

Buyers and sources are built into document.py. Everything else a seller
configures as code (suppression lists, monitors, digests …) is a `Section`:
its package describes the list's items (schema, checks, export, save) and
registers it from its app's `ready()`, so the document grows without this
package importing the layers above it. `config_export`, `config_validate` and
`config_import` treat every registered section like buyers and sources: by
slug, validated whole before anything is written, in the same transaction.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sources.configuration.base import Document, JsonPath, Problem


def _same(item: Document) -> Document:
    return item


@dataclass(frozen=True)
class Section:
    """One top-level list of slugged items in the configuration document."""

    # The document's key ("monitors") and how a change and the summary name it.
    key: str
    entity: str  # "monitor"
    label: str  # "Monitors"
    # The JSON Schema of one item (its "slug" a string); document.py checks
    # slugs for form and duplicates.
    item_schema: Callable[[], Document]
    # What a schema cannot say about one item: (item, its path, the whole
    # document), the document so an item can name a source or buyer defined in
    # the same file. Written defensively: the schema may have failed.
    problems: Callable[[Document, JsonPath, Document], list[Problem]]
    # Every stored item as a document, ordered by slug, secrets included.
    export: Callable[[], list[Document]]
    # The stored items with these slugs, by slug; `lock` when about to write.
    current: Callable[[Sequence[str], bool], dict[str, Document]]
    # Create or update one item from its document, after `normalise`.
    save: Callable[[Document], None]
    # An input item with its defaults filled in, comparable with `current`.
    normalise: Callable[[Document], Document] = _same
    # Secrets inside one item, as paths where "*" is each element of a list,
    # e.g. ("actions", "*", "secret"). Redacted on export, kept on import.
    secret_paths: tuple[tuple[str, ...], ...] = ()
    # Sections are saved after buyers and sources, lowest first.
    order: int = 100


_SECTIONS: dict[str, Section] = {}


def section_register(section: Section) -> None:
    """Add a section to the document (from an AppConfig.ready()); idempotent."""
    if section.key in ("buyers", "sources"):
        raise ValueError(f"{section.key!r} is built into the document")
    _SECTIONS[section.key] = section


def sections() -> list[Section]:
    """The registered sections, in the order they are saved."""
    return sorted(_SECTIONS.values(), key=lambda section: (section.order, section.key))


def section_secret_paths() -> tuple[tuple[str, ...], ...]:
    """Every section's secrets as document paths."""
    return tuple(
        (section.key, "*", *path)
        for section in sections()
        for path in section.secret_paths
    )
