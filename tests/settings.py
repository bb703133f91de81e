"""The suite's settings: the app's own, with a key of its own and plain http.

Set in the environment before config.settings reads it, so the processes that tests
start (workers, servers) inherit the same values.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret-" + "k" * 40)
os.environ.setdefault("LEADBACK_HTTPS", "false")

from config.settings import *  # noqa: F403

# Each test starts knowing no suppression list (tests/conftest.py), and the
# services that change lists make the process read them again: a copy that
# never goes stale by itself keeps the intake's statement counts exact.
LEADBACK_SUPPRESSION_CACHE_S = 3600.0
