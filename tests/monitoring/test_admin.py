"""The alerts page and the monitoring admin, through Django's test client."""

import re

import pytest
from django.urls import reverse

from monitoring.models import Alert, AlertAction, Monitor
from monitoring.services import alert_actions_run, monitors_evaluate
from tests.factories import SourceFactory
from tests.monitoring.test_evaluate import deliver, make_monitor

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def alerts():
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    deliver(60, days_ago=2, returned=30, lead__source=source)
    deliver(40, days_ago=1, returned=10, lead__source=source)
    monitor = make_monitor("bluesky-returns", name="Bluesky returns", source=source)
    make_monitor("quiet", name="Quiet", metric="conversion_rate", threshold=0.9)
    monitors_evaluate()
    return monitor


def test_the_alerts_page_shows_firing_alerts_with_numbers_sparkline_and_report(
    staff, alerts
):
    response = staff.get(reverse("admin:monitoring_alert_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    firing = page.split("<h2>Firing</h2>")[1].split("<h2>Recent alerts</h2>")[0]
    assert "Bluesky returns" in firing
    assert "40.00 %" in firing  # 40 of 100
    assert ">100<" in firing  # the sample
    assert "above 15.00 %" in firing
    assert firing.count("<svg") == 1
    assert "<polyline" in firing  # two days with data
    alert = Alert.objects.get()
    link = re.search(r'href="(/reports/by-source/\?[^"]+)"', firing)
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    assert f"start={alert.window_start:%Y-%m-%d}" in url
    assert f"end={alert.window_end:%Y-%m-%d}" in url
    assert f"source={alerts.source_id}" in url
    # The link leads to a report that shows the same figures.
    report = staff.get(url)
    assert report.status_code == 200
    figures = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", report.content.decode()))
    # Delivered, conversions (and the previous period's), returns.
    assert re.search(r"Total 100 0 was 0 40 was 0 ", figures)
    assert "40.0 %" in figures  # the same return rate


def test_the_page_reads_a_fixed_number_of_queries(
    staff, alerts, django_assert_max_num_queries
):
    for n in range(10):
        Alert.objects.create(
            monitor=alerts,
            state="resolved" if n % 2 else "firing",
            value=0.1,
            low=0.05,
            high=0.2,
            sample=100,
            threshold=0.15,
            window_start=Alert.objects.first().window_start,
            window_end=Alert.objects.first().window_end,
        )
    with django_assert_max_num_queries(15):
        assert (
            staff.get(reverse("admin:monitoring_alert_changelist")).status_code == 200
        )


def test_an_empty_page_says_so(staff, db):
    page = staff.get(reverse("admin:monitoring_alert_changelist")).content.decode()
    assert "No monitor is firing." in page
    assert "No alerts yet." in page


def test_evaluate_now_and_run_again(staff, alerts, smtp_settings):
    monitor = Monitor.objects.get(slug="quiet")
    response = staff.post(
        reverse("admin:monitoring_monitor_changelist"),
        {"action": "evaluate_now", "_selected_action": [monitor.pk]},
        follow=True,
    )
    assert "Evaluated 1 monitor(s): 0 fired, 0 resolved." in response.content.decode()

    alert_actions_run()
    action = AlertAction.objects.get()
    assert action.status == AlertAction.Status.SUCCEEDED
    response = staff.post(
        reverse("admin:monitoring_alertaction_changelist"),
        {"action": "run_again", "_selected_action": [action.pk]},
        follow=True,
    )
    assert "1 action will run again." in response.content.decode()
    action.refresh_from_db()
    assert action.status == AlertAction.Status.PENDING


def test_one_alert_shows_its_actions(staff, alerts):
    alert = Alert.objects.get()
    page = staff.get(
        reverse("admin:monitoring_alert_change", args=[alert.pk])
    ).content.decode()
    assert alert.public_id in page
    assert "email" in page
    assert "Pending" in page


def test_monitors_list_their_state(staff, alerts):
    page = staff.get(reverse("admin:monitoring_monitor_changelist")).content.decode()
    assert "Firing" in page
    assert "everything" in page  # the quiet monitor's scope


@pytest.fixture
def smtp_settings(settings):
    from tests.sources.file_servers import SmtpServer

    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
        yield server


def test_a_monitor_page_hides_the_tokens_of_its_apprise_url(staff, db):
    monitor = make_monitor(
        actions=[
            {"type": "email", "to": ["ops@seller.example"]},
            {"type": "notify", "url": "slack://T0001/B0002/s3cr3tt0k3n"},
        ]
    )
    page = staff.get(
        reverse("admin:monitoring_monitor_change", args=[monitor.pk])
    ).content.decode()
    assert "email to ops@seller.example; notify via slack://…" in page
    assert "s3cr3tt0k3n" not in page


@pytest.mark.parametrize(
    ("role", "may_run_again", "may_evaluate"),
    [("Support", True, False), ("Analyst", False, False), ("Seller admin", True, True)],
)
def test_roles_run_actions_and_evaluate_as_their_permissions_say(
    client, alerts, role, may_run_again, may_evaluate
):
    from tests.feedback.test_roles import member_of, setup_roles

    setup_roles()
    client.force_login(member_of(role))

    actions = client.get(
        reverse("admin:monitoring_alertaction_changelist")
    ).content.decode()
    monitors = client.get(reverse("admin:monitoring_monitor_changelist"))
    alerts_page = client.get(reverse("admin:monitoring_alert_changelist"))

    assert ('value="run_again"' in actions) is may_run_again
    assert ('value="evaluate_now"' in monitors.content.decode()) is may_evaluate
    assert alerts_page.status_code == 200
