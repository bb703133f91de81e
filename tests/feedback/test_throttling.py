"""API rate limits: per key (JSON API and LeadConduit URL together), per client
address without a valid key, 429 problem+json with Retry-After and RateLimit-*
headers, counted in the cache."""

import logging
import os

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from feedback.ratelimits import rate_hit
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    settings.LEADBACK_API_RATE_KEY = (3, 60)
    settings.LEADBACK_API_RATE_ANON = (2, 60)
    return settings


def event_url(event) -> str:
    return f"/api/v1/events/{event.event_id}"


def headers_of(response) -> tuple[str, str, str]:
    return (
        response["RateLimit-Limit"],
        response["RateLimit-Remaining"],
        response["RateLimit-Reset"],
    )


def test_a_key_gets_its_limit_then_429_with_headers(limits, buyer, buyer_client):
    event = DeliveryEventFactory(buyer=buyer)

    answers = [buyer_client.get(event_url(event)) for _ in range(3)]
    refused = buyer_client.get(event_url(event))

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert {a["RateLimit-Limit"] for a in answers} == {"3"}
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["title"] == "Too many requests"
    assert "3 requests a minute for this API key" in refused.json()["detail"]
    limit, remaining, reset = headers_of(refused)
    assert (limit, remaining) == ("3", "0")
    assert 1 <= int(reset) <= 60
    assert refused["Retry-After"] == reset


def test_keys_are_counted_apart(limits, buyer, buyer_client, other_buyer_client):
    event = DeliveryEventFactory(buyer=buyer)
    for _ in range(4):
        buyer_client.get(event_url(event))

    assert buyer_client.get("/api/v1/feedback").status_code == 429
    answer = other_buyer_client.get("/api/v1/feedback")
    assert answer.status_code == 200
    assert answer["RateLimit-Remaining"] == "2"


def test_the_leadconduit_url_shares_the_key_limit(limits, buyer, buyer_client):
    event = DeliveryEventFactory(buyer=buyer)
    for _ in range(3):
        assert buyer_client.get("/api/v1/feedback").status_code == 200

    response = buyer_client.post(
        f"/feedback?event_id={event.event_id}", {"type": "conversion"}
    )

    assert response.status_code == 429
    assert response.json()["outcome"] == "error"
    assert "Rate limit reached" in response.json()["reason"]
    assert int(response["Retry-After"]) >= 1
    assert response["RateLimit-Remaining"] == "0"


def test_calls_without_a_valid_key_are_limited_per_address(limits, buyer):
    event = DeliveryEventFactory(buyer=buyer)
    client = APIClient(REMOTE_ADDR="203.0.113.7")

    first = client.get(event_url(event))
    second = client.get(event_url(event), HTTP_X_API_KEY="lb_00000000_guess")
    third = client.get(event_url(event), HTTP_X_API_KEY="lb_00000000_guess-2")
    elsewhere = APIClient(REMOTE_ADDR="203.0.113.8").get(event_url(event))

    assert (first.status_code, second.status_code) == (401, 401)
    assert first["RateLimit-Remaining"] == "1"
    assert third.status_code == 429
    assert third["Content-Type"] == "application/problem+json"
    assert "without a valid API key" in third.json()["detail"]
    assert int(third["Retry-After"]) >= 1
    assert elsewhere.status_code == 401


def test_a_valid_key_is_not_held_back_by_its_addresss_guesses(limits, buyer, buyer_key):
    event = DeliveryEventFactory(buyer=buyer)
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    for _ in range(3):
        client.get(event_url(event))

    response = client.get(event_url(event), HTTP_X_API_KEY=buyer_key[1])

    assert response.status_code == 200
    assert response["RateLimit-Limit"] == "3"


def test_forwarded_addresses_count_only_behind_trusted_proxies(limits, buyer):
    event = DeliveryEventFactory(buyer=buyer)
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")

    def guess(client_address: str):
        forwarded = f"198.51.100.99, {client_address}"  # the first part is made up
        return proxy.get(event_url(event), HTTP_X_FORWARDED_FOR=forwarded)

    # No trusted proxy: the header is ignored, every call is the proxy's.
    assert [guess(f"192.0.2.{n}").status_code for n in range(3)] == [401, 401, 429]

    caches["default"].clear()
    limits.LEADBACK_TRUSTED_PROXIES = 1
    assert [guess("192.0.2.1").status_code for _ in range(3)] == [401, 401, 429]
    assert guess("192.0.2.2").status_code == 401


def test_the_schema_and_docs_are_not_counted(limits):
    client = APIClient()
    for _ in range(3):
        response = client.get("/api/schema/")
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response


def test_a_window_starts_again_at_its_end():
    rate = (2, 60)
    start = 1_800_000_000.0  # a multiple of 60: a window's first second
    counts = [rate_hit("t", "a", rate, now=start + s).count for s in (0, 10, 59.5)]
    after = rate_hit("t", "a", rate, now=start + 60)

    assert counts == [1, 2, 3]
    assert rate_hit("t", "a", rate, now=start + 10).reset_s == 50
    assert (after.count, after.remaining, after.reset_s) == (1, 1, 60)


def test_a_count_in_local_memory_is_the_caches_own():
    rate = (5, 60)
    start = 1_800_000_000.0
    for _ in range(3):
        usage = rate_hit("t", "a", rate, now=start)
    key = f"ratelimit:t:a:{int(start // 60)}"

    assert usage.count == 3
    assert caches["default"].get(key) == 3
    caches["default"].clear()
    assert rate_hit("t", "a", rate, now=start).count == 1
    assert caches["default"].get(key) == 1


def test_an_unreachable_cache_serves_the_request(
    limits, settings, buyer, buyer_client, caplog
):
    # Nothing listens on port 9 of the loopback: the connection is refused at once.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        }
    }
    event = DeliveryEventFactory(buyer=buyer)

    with caplog.at_level(logging.WARNING, logger="feedback.ratelimits"):
        responses = [buyer_client.get(event_url(event)) for _ in range(5)]

    assert {r.status_code for r in responses} == {200}
    assert "rate limit not counted" in caplog.text


def redis_url() -> str:
    url = os.environ.get("CACHE_URL") or os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis"):
        pytest.skip("needs Redis: CACHE_URL or a redis CELERY_BROKER_URL")
    return url


@pytest.mark.service
def test_counting_in_redis_is_one_round_trip_with_an_expiry(
    limits, settings, buyer, buyer_client, monkeypatch
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url(),
            "KEY_PREFIX": f"leadback-test-{os.getpid()}",
        }
    }
    cache = caches["default"]
    event = DeliveryEventFactory(buyer=buyer)
    client = cache._cache.get_client(write=True)
    sent = []
    original = type(client).execute_command

    def counting(self, *args, **kwargs):
        sent.append(args[0])
        return original(self, *args, **kwargs)

    try:
        answers = [buyer_client.get(event_url(event)) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        # The pipeline goes out as one request; no single command is sent alone.
        monkeypatch.setattr(type(client), "execute_command", counting)
        buyer_client.get(event_url(event))
        assert sent == []
        keys = client.keys(f"leadback-test-{os.getpid()}:*ratelimit:api-key:*")
        assert len(keys) == 1
        assert 0 < client.ttl(keys[0]) <= 61
        assert int(client.get(keys[0])) == 5
    finally:
        monkeypatch.undo()
        for key in client.keys(f"leadback-test-{os.getpid()}:*"):
            client.delete(key)
