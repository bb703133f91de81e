"""`setup_roles`: the staff groups, what each may do in the admin and the reports,
and running it again."""

import io
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from feedback.forwarding.models import Notification
from feedback.roles import ROLES
from tests.factories import UserFactory
from tests.feedback.test_forwarding_admin import make_notification

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def setup_roles() -> str:
    out = io.StringIO()
    call_command("setup_roles", stdout=out)
    return out.getvalue()


def member_of(name: str):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=name))
    return user


def codenames(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_creates_the_groups_and_running_again_changes_nothing():
    first = setup_roles()
    assert "Seller admin: created" in first
    before = {role.name: codenames(role.name) for role in ROLES}

    group = Group.objects.get(name="Support")
    group.permissions.clear()  # drifted by hand
    Group.objects.create(name="Interns")
    second = setup_roles()

    assert "Seller admin: updated" in second
    assert {role.name: codenames(role.name) for role in ROLES} == before
    assert Group.objects.filter(name="Interns").exists()
    assert Group.objects.count() == len(ROLES) + 1


def test_what_each_role_holds():
    setup_roles()
    seller, analyst, support = (
        codenames(n) for n in ("Seller admin", "Analyst", "Support")
    )

    assert {"reporting.view_reports", "reporting.view_billing"} <= seller
    assert {"sources.change_feedbackconfig", "auth.add_user"} <= seller
    assert {"reporting.view_reports", "reporting.view_billing"} <= analyst
    assert all(".view_" in name for name in analyst)
    assert "reporting.view_reports" not in support
    assert "reporting.view_billing" not in support
    assert "feedback.change_notification" in support
    assert "feedback.view_feedback" in support
    assert "sources.change_feedbackconfig" not in support
    assert "axes.delete_accessattempt" in support
    assert "axes.delete_accessattempt" in seller
    assert not any(name.startswith("auth.") for name in analyst | support)


def test_an_unknown_permission_stops_the_command(monkeypatch):
    from django.core.management.base import CommandError

    from feedback import roles

    broken = (roles.Role("Broken", "", ("feedback.fly_*",)),)
    monkeypatch.setattr(roles, "ROLES", broken)
    with pytest.raises(CommandError, match=r"feedback\.fly_\*"):
        setup_roles()
    assert not Group.objects.filter(name="Broken").exists()


def test_the_roles_at_work_in_the_admin_and_the_reports(client):
    setup_roles()
    reports = reverse("reporting:report-index")
    billing = reverse("reporting:report-detail", args=["billing"])
    config_add = reverse("admin:sources_feedbackconfig_add")
    notifications = reverse("admin:feedback_notification_changelist")

    client.force_login(member_of("Analyst"))
    assert client.get(reports).status_code == 200
    assert client.get(billing, {"export": "csv"}).status_code == 200
    assert client.get(notifications).status_code == 200
    assert client.get(config_add).status_code == 403
    page = client.get(notifications).content.decode()
    assert "Resend selected notifications" not in page

    client.force_login(member_of("Support"))
    assert client.get(reports).status_code == 403
    assert client.get(billing).status_code == 403
    assert client.get(config_add).status_code == 403
    page = client.get(notifications).content.decode()
    assert "Resend selected notifications" in page

    client.force_login(member_of("Seller admin"))
    assert client.get(billing).status_code == 200
    assert client.get(config_add).status_code == 200


def test_support_resends_a_notification(client):
    setup_roles()
    notification = make_notification(Notification.Status.DEAD)
    client.force_login(member_of("Support"))

    response = client.post(
        reverse("admin:feedback_notification_changelist"),
        {"action": "resend", "_selected_action": [notification.pk]},
    )

    assert response.status_code == 302
    notification.refresh_from_db()
    assert notification.status == Notification.Status.PENDING


def test_every_role_is_documented():
    doc = (ROOT / "docs" / "roles.md").read_text()
    for role in ROLES:
        assert f"**{role.name}**" in doc
