"""How a lead's fields are named to people: "Phone", not "phone_1"."""

from typing import Any

# The fields sellers' forms usually carry, in the order a person reads them.
FIELD_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone_1": "Phone",
    "phone_2": "Second phone",
    "address_1": "Address",
    "address_2": "Address (line 2)",
    "city": "City",
    "state": "State",
    "postal_code": "ZIP code",
    "zip": "ZIP code",
    "country": "Country",
    "dob": "Date of birth",
    "ip_address": "IP address",
    "trustedform_cert_url": "TrustedForm certificate",
    "jornaya_leadid": "Jornaya LeadiD",
}
ORDER = {name: position for position, name in enumerate(FIELD_LABELS)}


def field_label(name: str) -> str:
    """The known label, else the key made readable: "loan_amount" → "Loan amount"."""
    known = FIELD_LABELS.get(name)
    if known:
        return known
    words = name.replace("_", " ").replace("-", " ").split()
    return " ".join(words).capitalize() if words else name


def lead_fields(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) pairs, known fields first in reading order, then the rest
    by name."""
    names = sorted(data, key=lambda name: (ORDER.get(name, len(ORDER)), name))
    return [(field_label(name), data[name]) for name in names]
