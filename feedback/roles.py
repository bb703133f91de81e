"""Staff roles: the groups `manage.py setup_roles` creates, and what each may do.

Staff status only opens the admin; what a staff user sees and changes there comes
from permissions, given through these groups. docs/roles.md explains them.
"""

from dataclasses import dataclass
from fnmatch import fnmatchcase

from django.contrib.auth.models import Group, Permission
from django.db import transaction


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    # "app_label.codename" patterns; each must match at least one permission.
    permissions: tuple[str, ...]
    # Patterns taken back out of what `permissions` matched.
    withheld: tuple[str, ...] = ()


ROLES: tuple[Role, ...] = (
    Role(
        "Seller admin",
        "Everything in the admin: sources and their configs, buyers, policies, API "
        "keys, users and groups, login lockouts, resending, deciding returns, and "
        "every report including billing.",
        (
            "sources.*",
            "feedback.*",
            "reporting.*",
            "monitoring.*",
            "auth.*",
            "axes.*",
        ),
    ),
    Role(
        "Analyst",
        "Every report and its CSV, billing included; every admin page read-only.",
        (
            "sources.view_*",
            "feedback.view_*",
            "reporting.view_*",
            "monitoring.view_*",
        ),
    ),
    Role(
        "Support",
        "Every admin page of sources, buyers, deliveries, feedback, notifications, "
        "batch runs, webhooks and imports read-only; resends notifications, batch "
        "runs and webhook messages, queues stalled imports again, runs alert "
        "actions again, and unlocks locked-out logins. No reports: "
        "they show revenue.",
        (
            "sources.view_*",
            "feedback.view_*",
            # The pages stay read-only: change is what the resend and requeue
            # actions check.
            "feedback.change_notification",
            "feedback.change_deadnotification",
            "feedback.change_batchrun",
            "feedback.change_feedbackimport",
            "feedback.change_webhookmessage",
            # Monitors and alerts read-only; runs an alert's actions again.
            "monitoring.view_*",
            "monitoring.change_alertaction",
            # Deleting a login's failed attempts unlocks it.
            "axes.view_accessattempt",
            "axes.delete_accessattempt",
        ),
        # Who exported what, and staff members' addresses, are for the
        # seller's administrators and analysts.
        withheld=("feedback.view_auditentry",),
    ),
    Role(
        "Returns reviewer",
        "Every admin page of sources, buyers, deliveries and feedback read-only, "
        "the returns review queue and the credits; approves and rejects returns, "
        "which credits buyers. No reports.",
        (
            "sources.view_*",
            "feedback.view_*",
            # Approving writes a credit: deciding is a permission of its own,
            # not part of seeing the queue.
            "feedback.decide_returns",
        ),
        withheld=("feedback.view_auditentry",),
    ),
)


class RoleError(Exception):
    """A role names a permission that does not exist (migrations not run?)."""


@dataclass(frozen=True)
class RoleResult:
    name: str
    created: bool
    permissions: int


def role_permissions(role: Role, available: list[Permission]) -> list[Permission]:
    """The permissions a role's patterns match, refusing a pattern that matches none."""
    chosen: dict[int, Permission] = {}
    for pattern in role.permissions:
        matched = [
            p
            for p in available
            if fnmatchcase(f"{p.content_type.app_label}.{p.codename}", pattern)
        ]
        if not matched:
            raise RoleError(
                f"{role.name}: no permission matches {pattern!r}; run migrate first."
            )
        chosen.update((p.pk, p) for p in matched)
    return [
        p
        for p in chosen.values()
        if not any(
            fnmatchcase(f"{p.content_type.app_label}.{p.codename}", pattern)
            for pattern in role.withheld
        )
    ]


def roles_setup() -> list[RoleResult]:
    """Create the role groups, or set an existing group's permissions back to its
    role's: running it again changes nothing, and other groups are left alone."""
    available = list(Permission.objects.select_related("content_type"))
    results = []
    with transaction.atomic():
        for role in ROLES:
            permissions = role_permissions(role, available)
            group, created = Group.objects.get_or_create(name=role.name)
            group.permissions.set(permissions)
            results.append(RoleResult(role.name, created, len(permissions)))
    return results
