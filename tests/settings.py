"""The suite's settings: the app's own, with a key of its own and plain http.

Set in the environment before config.settings reads it, so the processes that tests
start (workers, servers) inherit the same values.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret-" + "k" * 40)
os.environ.setdefault("LEADBACK_HTTPS", "false")
# Every test sees the suppression lists it just wrote, whatever the process.
os.environ.setdefault("LEADBACK_SUPPRESSION_CACHE_S", "0")

from config.settings import *  # noqa: F403
