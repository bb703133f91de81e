"""WSGI entry point (gunicorn config.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Load every view now rather than on the first request, then leave what the app
# loaded out of the garbage collector's full collections: with it a full pass
# over some 120,000 objects took up to 80 ms, a pause the requests queued behind
# it waited out (docs/performance.md). The loaded modules live as long as the
# process anyway.
get_resolver().url_patterns  # noqa: B018 - imports the URLconf and its views
gc.collect()
gc.freeze()
