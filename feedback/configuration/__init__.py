"""Configuration as code (DESIGN §9): buyers and sources as one JSON document.

`config_export` writes the document; `config_import` validates the whole of it
and only then writes. The document as a whole lives in document.py, the buyers
in buyers.py, secrets in secrets.py, the sources in sources/configuration/, and
the other lists (suppression lists, monitors, digests) are `Section`s their
packages register (sections.py). The format is described in docs/configuration.md.
"""

from feedback.configuration.document import (
    MAX_DEPTH,
    Action,
    Change,
    ConfigurationError,
    ImportReport,
    config_dumps,
    config_export,
    config_import,
    config_loads,
    config_schema,
    config_validate,
)
from feedback.configuration.secrets import (
    SECRET_PATHS,
    redact_secrets,
    restore_secrets,
)
from feedback.configuration.sections import Section, section_register
from sources.configuration.base import REDACTED, Problem, json_path

__all__ = [
    "MAX_DEPTH",
    "REDACTED",
    "SECRET_PATHS",
    "Action",
    "Change",
    "ConfigurationError",
    "ImportReport",
    "Problem",
    "Section",
    "config_dumps",
    "config_export",
    "config_import",
    "config_loads",
    "config_schema",
    "config_validate",
    "json_path",
    "redact_secrets",
    "restore_secrets",
    "section_register",
]
