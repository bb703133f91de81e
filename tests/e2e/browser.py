"""Headless Chromium for browser tests (Playwright's sync API).

Import the fixtures from here (tests/e2e/conftest.py does) and mark tests
`@pytest.mark.browser`. A missing Chromium or Playwright fails the test with the
fix to apply: a browser test that silently skips would hide a broken user path.
"""

import os
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def chromium_path() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps an asyncio loop running in the
    test thread while it is started, and later tests that run a loop of their
    own (the SFTP transport's) would find it there."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(
            f"Browser tests need the playwright package ({error}); "
            "install the dev dependencies.",
            pytrace=False,
        )
    executable = chromium_path()
    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"Browser tests need Chromium, not found at {executable}: "
            "run `apt-get install -y chromium`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own context that can only reach this machine.

    Requests to any other host are aborted (no test reaches the internet, and a
    page that needs a CDN shows up as a failure). Uncaught JavaScript errors fail
    the test at teardown.
    """
    context = browser.new_context()
    context.set_default_timeout(10_000)
    blocked: list[str] = []
    errors: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS or not url.startswith("http"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    if errors or blocked:
        pytest.fail(
            f"JavaScript errors: {errors}; blocked non-local requests: {blocked}",
            pytrace=False,
        )
