"""Logins lock out after repeated failures (django-axes), the portal's and the
admin's alike; password-reset requests are throttled per address and per client
without saying whether an address has an account."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-9"
PORTAL_LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
RESET = "/accounts/password_reset/"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    return settings


@pytest.fixture
def alice(db):
    return UserFactory(username="alice", is_staff=True)


def login(client: Client, username: str, password: str, url: str = PORTAL_LOGIN):
    return client.post(url, {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", [PORTAL_LOGIN, ADMIN_LOGIN])
def test_failed_logins_lock_out_even_the_right_password(client, limits, alice, url):
    refused = [login(client, "alice", "wrong", url) for _ in range(2)]
    locked = login(client, "alice", "wrong", url)
    again = login(client, "alice", PASSWORD, url)

    assert [r.status_code for r in refused] == [200, 200]
    for response in (locked, again):
        assert response.status_code == 429
        page = response.content.decode()
        assert "Too many failed logins" in page
        assert "<strong>15 minutes</strong>" in page
        assert f'href="{url}"' in page  # back to the login it came from
        assert response["Retry-After"] == "900"
    assert not logged_in(client)


def test_the_lockout_is_per_user_name_and_address(client, limits, alice):
    UserFactory(username="bob")
    for _ in range(3):
        login(client, "alice", "wrong")

    assert login(client, "alice", PASSWORD).status_code == 429
    assert login(Client(), "bob", PASSWORD).status_code == 302
    elsewhere = Client(REMOTE_ADDR="203.0.113.9")
    assert login(elsewhere, "alice", PASSWORD).status_code == 302


def test_unknown_user_names_lock_out_the_same_way(client, limits):
    answers = [login(client, "nobody", "wrong").status_code for _ in range(4)]

    assert answers == [200, 200, 429, 429]


def test_the_lockout_ends_after_the_cool_off(client, limits, alice):
    with time_machine.travel(START, tick=False):
        for _ in range(3):
            login(client, "alice", "wrong")
    with time_machine.travel(START + timedelta(minutes=14), tick=False):
        assert login(client, "alice", PASSWORD).status_code == 429
    # That try started the wait again.
    with time_machine.travel(START + timedelta(minutes=28), tick=False):
        assert login(client, "alice", PASSWORD).status_code == 429
    with time_machine.travel(START + timedelta(minutes=44), tick=False):
        assert login(client, "alice", PASSWORD).status_code == 302
        assert logged_in(client)


def test_a_successful_login_forgets_the_failures_before_it(client, limits, alice):
    for _ in range(2):
        login(client, "alice", "wrong")
    assert login(client, "alice", PASSWORD).status_code == 302
    client.post("/accounts/logout/")

    answers = [login(client, "alice", "wrong").status_code for _ in range(2)]

    assert answers == [200, 200]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(limits, alice):
    limits.LEADBACK_TRUSTED_PROXIES = 1
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    for _ in range(3):
        proxy.post(
            PORTAL_LOGIN,
            {"username": "alice", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="198.51.100.20",
        )

    other_client = proxy.post(
        PORTAL_LOGIN,
        {"username": "alice", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.21",
    )

    assert other_client.status_code == 302


# Password reset ----------------------------------------------------------------


def test_reset_mail_per_address_stops_without_saying_so(client, settings, alice):
    settings.LEADBACK_PASSWORD_RESET_RATE_EMAIL = (2, 3600)

    known = [client.post(RESET, {"email": e}) for e in ("alice@example.com",) * 3]
    known.append(client.post(RESET, {"email": "ALICE@Example.com"}))
    unknown = [client.post(RESET, {"email": "nobody@example.com"}) for _ in range(4)]

    assert len(mail.outbox) == 2
    for response in known + unknown:
        assert response.status_code == 302
        assert response["Location"] == "/accounts/password_reset/done/"


def test_reset_requests_per_client_are_limited(client, settings, alice):
    settings.LEADBACK_PASSWORD_RESET_RATE_CLIENT = (3, 3600)
    for n in range(3):
        assert client.post(RESET, {"email": f"x{n}@example.com"}).status_code == 302
    assert client.get(RESET).status_code == 200  # showing the form is not counted

    refused = client.post(RESET, {"email": "alice@example.com"})
    other = Client(REMOTE_ADDR="203.0.113.5").post(
        RESET, {"email": "alice@example.com"}
    )

    assert refused.status_code == 429
    assert "Too many reset requests" in refused.content.decode()
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert other.status_code == 302
    assert len(mail.outbox) == 1  # the other client's


def test_every_setting_has_a_default(settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == timedelta(minutes=15)
    assert settings.LEADBACK_PASSWORD_RESET_RATE_EMAIL == (3, 3600)
    assert settings.LEADBACK_PASSWORD_RESET_RATE_CLIENT == (20, 3600)
