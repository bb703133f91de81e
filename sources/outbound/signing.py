"""Standard Webhooks signatures (standardwebhooks.com) for outbound requests.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is the
base64 part of a `whsec_` secret, and the signature is `v1,<base64 HMAC-SHA256>`,
so sources can verify it with any Standard Webhooks library.
"""

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


class SigningSecretError(ValueError):
    """The signing secret is not a `whsec_` base64 secret."""


def generate_secret() -> str:
    """A new `whsec_` secret with a 32-byte key."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret, or SigningSecretError."""
    if not secret.startswith(SECRET_PREFIX):
        raise SigningSecretError("A signing secret starts with whsec_.")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Padding is optional in the wild; Standard Webhooks libraries accept both.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise SigningSecretError("The signing secret is not valid base64.") from None
    if not key:
        raise SigningSecretError("The signing secret is empty.")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }
