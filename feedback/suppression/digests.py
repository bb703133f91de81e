"""What a suppression entry holds: digests of a normalised email or phone.

Email: trimmed, lower case. Phone: digits only, a North American number as its
ten digits without the leading 1 (feedback/services.py, as lead search does).
"""

import hashlib
import re
from dataclasses import dataclass

from feedback.services import normalize_email, normalize_phone

HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
HEX_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class Digest:
    field: str  # "email" | "phone"
    sha256: str
    md5: str


def email_value(value: object) -> str:
    email = normalize_email(value)
    return email if "@" in email else ""


def phone_value(value: object) -> str:
    return normalize_phone(value)


def digest(field: str, value: str) -> Digest:
    raw = value.encode()
    return Digest(
        field=field,
        sha256=hashlib.sha256(raw).hexdigest(),
        md5=hashlib.md5(raw, usedforsecurity=False).hexdigest(),
    )


def sha256_of(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def lead_digests(data: object) -> list[Digest]:
    """The digests of a lead's email and first phone (lead data as stored)."""
    if not isinstance(data, dict):
        return []
    found = []
    email = email_value(data.get("email"))
    if email:
        found.append(digest("email", email))
    phone = phone_value(data.get("phone_1"))
    if phone:
        found.append(digest("phone", phone))
    return found
