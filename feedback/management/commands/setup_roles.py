from typing import Any

from django.core.management.base import BaseCommand, CommandError

from feedback.roles import ROLES, RoleError, roles_setup


class Command(BaseCommand):
    help = (
        "Create the staff groups "
        + ", ".join(role.name for role in ROLES)
        + " with their permissions (docs/roles.md), or set existing ones back to "
        "them. Safe to run again, e.g. after every migrate."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            results = roles_setup()
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        for result in results:
            action = "created" if result.created else "updated"
            self.stdout.write(
                f"{result.name}: {action}, {result.permissions} permissions"
            )
