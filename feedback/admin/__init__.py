"""The seller's admin: configuration (buyers, policies, keys, outcome codes) and a
read-only view of what happened (leads, deliveries, feedback, notifications).

Django's autodiscovery imports this package; each module registers its models,
the forwarding, CSV import and returns admins included.
"""

from feedback.admin import audit, buyers, records
from feedback.forwarding import admin as forwarding
from feedback.imports import admin as imports
from feedback.privacy import admin as privacy
from feedback.returns import admin as returns
from feedback.sourcestatus import admin as sourcestatus
from feedback.suppression import admin as suppression
from feedback.webhooks import admin as webhooks

__all__ = [
    "audit",
    "buyers",
    "forwarding",
    "imports",
    "privacy",
    "records",
    "returns",
    "sourcestatus",
    "suppression",
    "webhooks",
]
