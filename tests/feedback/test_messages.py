"""Refusals read as sentences: a message about a field is led by the field,
a message that names its subject stands alone, and several join as prose."""

import pytest

from feedback.intake.parse import FieldError, join_errors


@pytest.mark.parametrize(
    ("field", "message", "sentence"),
    [
        ("revenue", "Must be a decimal number.", "revenue must be a decimal number."),
        (
            "occurred_at",
            "Cannot be in the future.",
            "occurred_at cannot be in the future.",
        ),
        (
            "reason",
            "must not contain NUL characters",
            "reason must not contain NUL characters.",
        ),
        ("occurred_at", "Is out of range.", "occurred_at is out of range."),
        (
            "event_id",
            "This lead was already returned.",
            "This lead was already returned.",
        ),
        ("", "each feedback must be an object", "Each feedback must be an object."),
        ("type", "Send a type or an outcome_code.", "Send a type or an outcome_code."),
    ],
)
def test_each_error_is_a_sentence(field, message, sentence):
    error = FieldError(field, message)
    assert error.sentence() == sentence
    assert error.as_dict() == {"field": field, "message": message}  # kept apart


def test_several_errors_read_as_prose():
    errors = [
        FieldError("revenue", "Cannot be negative."),
        FieldError("type", "Harbor Digital does not accept return feedback."),
    ]
    assert join_errors(errors) == (
        "revenue cannot be negative. Harbor Digital does not accept return feedback."
    )
