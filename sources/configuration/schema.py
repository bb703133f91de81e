"""The JSON Schema of a source and its feedback configs in a configuration document."""

from sources.configuration.base import (
    HTTP_METHODS,
    KINDS,
    METHODS,
    NAME_SCHEMA,
    RULES_SCHEMA,
    SLUG_SCHEMA,
    WEEKDAYS,
    Document,
    object_schema,
    tagged_schema,
)


def source_schema() -> Document:
    accepts_entry = object_schema(
        {
            "enabled": {"type": "boolean"},
            "allowed_reasons": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 200},
            },
        },
        required=["enabled"],
    )
    return object_schema(
        {
            "slug": SLUG_SCHEMA,
            "name": NAME_SCHEMA,
            "accepts": object_schema(dict.fromkeys(KINDS, accepts_entry)),
            "feedback": {"type": "array", "items": feedback_config_schema()},
        },
        required=["slug", "name"],
    )


def feedback_config_schema() -> Document:
    """The shape of one per-source feedback delivery config (DESIGN §5, §9).

    Stored as sources.FeedbackConfig rows; `feedback_config_problems` adds the
    checks a schema cannot express.
    """
    text = {"type": "string", "maxLength": 500}
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    secret = {"type": "string", "minLength": 1, "maxLength": 2000}
    username = {"type": "string", "minLength": 1, "maxLength": 200}
    file_transport: Document = {
        "properties": {
            "host": {"type": "string", "minLength": 1, "maxLength": 253},
            "port": port,
            "username": text,
            "password": secret,
            "directory": text,
        },
        "required": ["host"],
    }
    correction = object_schema(
        {
            "method": {"enum": [m for m in METHODS if m != "batch"]},
            "url": {"type": "string", "minLength": 1, "maxLength": 2000},
            "http_method": {"enum": list(HTTP_METHODS)},
            "soap_operation": {"type": "string", "minLength": 1},
            "mappings": {
                "type": "array",
                "minItems": 1,
                "items": object_schema(
                    {
                        "target": {"type": "string", "minLength": 1, "maxLength": 500},
                        "value": {"type": "string", "maxLength": 5000},
                    },
                    required=["target", "value"],
                ),
            },
        },
        required=["method", "url", "mappings"],
    )
    # Where the source is told of an erasure (DESIGN §12; sources/services.py
    # `on_erase_problem` holds the same rules).
    erasure = object_schema(
        {
            "url": {"type": "string", "minLength": 1, "maxLength": 2000},
            "method": {"enum": ["json", "form", "query", "xml"]},
            "mappings": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 5000},
            },
        },
        required=["url"],
    )
    return object_schema(
        {
            "kind": {"enum": list(KINDS)},
            "enabled": {"type": "boolean"},
            # Returns only (DESIGN §10); checked with the config's other rules.
            "forward_on": {"enum": ["accepted", "approved"]},
            "method": {"enum": list(METHODS)},
            "url": {"type": "string", "minLength": 1, "maxLength": 2000},
            "http_method": {"enum": list(HTTP_METHODS)},
            "sync": {"type": "boolean"},
            "timeout_s": {"type": "number", "minimum": 0.1, "maximum": 120},
            "headers": {"type": "object", "additionalProperties": text},
            "auth": tagged_schema(
                "type",
                {
                    "none": {"properties": {}},
                    "basic": {
                        "properties": {"username": username, "password": secret},
                        "required": ["username", "password"],
                    },
                    "bearer": {"properties": {"token": secret}, "required": ["token"]},
                    "header": {
                        "properties": {
                            "name": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 100,
                            },
                            "value": secret,
                        },
                        "required": ["name", "value"],
                    },
                    "wsse": {
                        "properties": {
                            "username": username,
                            "password": secret,
                            "password_type": {"enum": ["text", "digest"]},
                        },
                        "required": ["username", "password"],
                    },
                },
            ),
            "signing": object_schema(
                {"enabled": {"type": "boolean"}, "secret": secret}
            ),
            "criteria": RULES_SCHEMA,
            "mappings": {
                "type": "array",
                "items": object_schema(
                    {
                        "target": {"type": "string", "minLength": 1, "maxLength": 500},
                        "value": {"type": "string", "maxLength": 5000},
                    },
                    required=["target", "value"],
                ),
            },
            # Corrections (DESIGN §12): checked with the config's other rules.
            "on_retract": correction,
            "on_amend": correction,
            "on_erase": erasure,
            "response": object_schema(
                {
                    "outcome_search_term": text,
                    "outcome_search_path": text,
                    "outcome_on_match": {"enum": ["success", "failure", "error"]},
                    "reason_path": text,
                    "default_reason": text,
                    "reference_path": text,
                }
            ),
            "soap": object_schema(
                {
                    "operation": {"type": "string", "minLength": 1},
                    "version": {"enum": ["1.1", "1.2"]},
                },
                required=["operation"],
            ),
            "batch": object_schema(
                {
                    "schedule": object_schema(
                        {
                            "every": {"enum": ["hour", "day", "week"]},
                            "at": {
                                "type": "string",
                                "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                # Our own keyword, read by _schema_problems.
                                "x-message": "must be a 24-hour time, e.g. '06:00'",
                            },
                            "day": {"enum": list(WEEKDAYS)},
                            "timezone": {"type": "string", "minLength": 1},
                        },
                        required=["every"],
                    ),
                    "transport": tagged_schema(
                        "type",
                        {
                            "ftp": file_transport,
                            "ftps": {
                                "properties": {
                                    **file_transport["properties"],
                                    "certificate": {"type": "string"},
                                },
                                "required": ["host"],
                            },
                            "sftp": {
                                "properties": {
                                    **file_transport["properties"],
                                    "private_key": secret,
                                    "host_key": {"type": "string", "minLength": 1},
                                },
                                "required": ["host", "username", "host_key"],
                            },
                            "s3": {
                                "properties": {
                                    "bucket": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 63,
                                    },
                                    "prefix": text,
                                    "region": {"type": "string", "maxLength": 64},
                                    "endpoint_url": {
                                        "type": "string",
                                        "maxLength": 2000,
                                    },
                                    "access_key_id": username,
                                    "secret_access_key": secret,
                                },
                                "required": [
                                    "bucket",
                                    "access_key_id",
                                    "secret_access_key",
                                ],
                            },
                            "email": {
                                "properties": {
                                    "to": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "minItems": 1,
                                    },
                                    "subject": text,
                                },
                                "required": ["to"],
                            },
                        },
                    ),
                    "file_name": {"type": "string", "minLength": 1},
                    "header": {"type": "boolean"},
                    "send_empty": {"type": "boolean"},
                },
                required=["schedule", "transport", "file_name"],
            ),
        },
        required=["kind", "method"],
    )
