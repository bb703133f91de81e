"""The app's own settings plus the ceiling endpoint, for bench/intake.py only.

Everything else (middleware, database options, DRF) stays exactly as configured in
config/settings.py so the ceiling pays the same per-request costs as the app.
"""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.urls"
