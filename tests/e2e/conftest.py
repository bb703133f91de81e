"""Fixtures for end-to-end tests."""

import os

from tests.e2e.browser import browser, page

__all__ = ["browser", "page"]

# Playwright's sync API runs an asyncio event loop in the test's thread, so
# Django's async-safety check refuses the ORM calls pytest-django makes there
# (flushing the database after a live_server test) although nothing is async.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
