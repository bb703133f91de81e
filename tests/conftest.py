"""Shared fixtures: personas (two buyers who must not see each other, a staff user),
API clients authenticated by key, and the switch for service-marked tests."""

import os

import pytest
from rest_framework.test import APIClient

from feedback.models import ApiKey
from feedback.services import api_key_create
from tests.factories import BuyerFactory, BuyerMembershipFactory, UserFactory

SERVICES_CONFIGURED = bool(
    os.environ.get("DATABASE_URL", "").startswith("postgres")
    and os.environ.get("CELERY_BROKER_URL", "").startswith(("redis", "amqp"))
)


# CI's second run sets LEADBACK_REQUIRE_SERVICES=1: there a service-marked test that
# skips (for any reason) is a failure, so the real-component tests cannot go missing.
REQUIRE_SERVICES = os.environ.get("LEADBACK_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(config, items):
    if SERVICES_CONFIGURED:
        return
    if REQUIRE_SERVICES:
        raise pytest.UsageError(
            "LEADBACK_REQUIRE_SERVICES=1 needs DATABASE_URL (postgres) and "
            "CELERY_BROKER_URL (redis or amqp)."
        )
    skip = pytest.mark.skip(
        reason="needs PostgreSQL and a broker: set DATABASE_URL and CELERY_BROKER_URL"
    )
    for item in items:
        if "service" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and "service" in item.keywords:
        report.outcome = "failed"
        report.longrepr = f"service-marked test skipped: {report.longrepr}"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counts start from nothing in every test: the local-memory cache
    lives as long as the test process, and ids repeat across rolled-back tests."""
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture(autouse=True)
def _no_suppression_lists():
    """Every test starts with no suppression list, as its database does; the
    services that write lists make the process read them again."""
    from feedback.suppression.services import suppression_rules_forget

    suppression_rules_forget(none_exist=True)


@pytest.fixture
def buyer(db):
    return BuyerFactory(slug="acme-insurance", name="Acme Insurance")


@pytest.fixture
def other_buyer(db):
    return BuyerFactory(slug="zenith-direct", name="Zenith Direct")


@pytest.fixture
def buyer_user(buyer):
    user = UserFactory(username="alice")
    BuyerMembershipFactory(user=user, buyer=buyer)
    return user


@pytest.fixture
def other_buyer_user(other_buyer):
    user = UserFactory(username="bob")
    BuyerMembershipFactory(user=user, buyer=other_buyer)
    return user


@pytest.fixture
def staff_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


def _client_for(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


@pytest.fixture
def integration_key(db):
    return api_key_create(scope=ApiKey.Scope.INTEGRATION, name="distribution")


@pytest.fixture
def integration_client(integration_key):
    return _client_for(integration_key[1])


@pytest.fixture
def buyer_key(buyer):
    return api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)


@pytest.fixture
def buyer_client(buyer_key):
    return _client_for(buyer_key[1])


@pytest.fixture
def other_buyer_key(other_buyer):
    return api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=other_buyer)


@pytest.fixture
def other_buyer_client(other_buyer_key):
    return _client_for(other_buyer_key[1])


@pytest.fixture
def celery_worker_process(request, transactional_db, tmp_path):
    """A real Celery worker process on the configured broker and the test database;
    one child process, or as many as an indirect parameter says."""
    import subprocess
    import sys
    import time

    from django.db import connection

    from config.celery import app

    settings_dict = connection.settings_dict
    database_url = (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )
    hostname = f"test-{os.getpid()}@%h"
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            f"--concurrency={getattr(request, 'param', 1)}",
            f"--hostname={hostname}",
            "--loglevel=INFO",
        ],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    replies: list[dict] = []
    while time.monotonic() < deadline and not replies:
        if process.poll() is not None:
            raise RuntimeError((tmp_path / "worker.log").read_text())
        replies = app.control.ping(timeout=1.0) or []
    if not replies:
        process.kill()
        raise RuntimeError(
            "worker did not answer: " + (tmp_path / "worker.log").read_text()
        )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(autouse=True)
def _fresh_mapping_cache():
    # Workers cache a config's mappings by (pk, updated_at); test databases are
    # rolled back and reuse primary keys, sometimes under a frozen clock.
    from sources import services

    services._MAPPINGS_CACHE.clear()


@pytest.fixture(autouse=True)
def config_dns(monkeypatch):
    """What destination names resolve to when a config is checked on save: this
    dict, never the network. `localhost` only, unless a test adds names; any
    other name does not resolve, and so passes the check (connections are still
    guarded when something is sent)."""
    import socket

    from sources.outbound import guard

    answers = {"localhost": ["127.0.0.1", "::1"]}

    def addresses(host):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(answers[host])

    monkeypatch.setattr(guard, "_addresses_for_check", addresses)
    return answers
