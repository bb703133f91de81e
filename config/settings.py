"""Leadback settings: one module, read from the environment.

Defaults need no server (SQLite and a filesystem broker under ./var/, a local-memory
cache) and are safe to deploy: outside DEBUG the app refuses to start without a
SECRET_KEY of its own, and assumes TLS. `make demo` and the tests set their own key.
Production values are documented in README.md.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_float,
    env_float_list,
    env_int,
    env_list,
    env_rate,
    env_str,
)

# Lets typed code subscript Django's generic classes (ModelAdmin[Model], ...).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("LEADBACK_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
# Signs sessions and password-reset links: anyone who knows it can forge them. The
# embedded key is public, so it is only accepted for local development (DEBUG).
EMBEDDED_SECRET_KEY = "django-insecure-leadback-embedded-mode-only-set-SECRET_KEY"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", EMBEDDED_SECRET_KEY)
if SECRET_KEY == EMBEDDED_SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: outside DEBUG, Leadback needs a long random key of "
        "its own, e.g. from python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(50))'. For local development set DEBUG=true."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en-us"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "sources",
    "feedback",
    "reporting",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "feedback.api.middleware.RefuseUnstorableUrlText",
    "feedback.api.throttling.RateLimitHeadersMiddleware",
    # Keeps the request's user and address at hand for the audit log.
    "feedback.audit.context.AuditScopeMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database -------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'leadback.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one file in the embedded mode: WAL
    # lets readers run beside the writer, IMMEDIATE takes the write lock up front so
    # concurrent writers queue (busy timeout) instead of failing mid-transaction.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
elif env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Parameters bound by PostgreSQL rather than quoted into the text, so psycopg
    # prepares a statement once a connection has run it 5 times: PostgreSQL then
    # stops planning it on every run, most of the cost of the intake's small reads.
    # Off for a pooler that cannot keep prepared statements (PgBouncer before 1.21
    # in transaction mode).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # Large reads (exports, batch files) stream through a server-side cursor. A
    # pooler in transaction mode (PgBouncer) hands each transaction its own server
    # connection, where such a cursor does not survive: switch them off there.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = not env_bool(
        "DATABASE_SERVER_SIDE_CURSORS", True
    )
# A PostgreSQL streaming replica for the reports (reporting/replica.py): report
# pages and their CSV exports read there, everything else stays on the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL needs DATABASE_URL to be PostgreSQL: a replica "
            "follows a PostgreSQL primary."
        )
    try:
        DATABASES["replica"] = dj_database_url.parse(
            DATABASE_REPLICA_URL,
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
            test_options={"MIRROR": "default"},
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_REPLICA_URL: {exc}") from None
    if DATABASES["replica"]["ENGINE"] != DATABASES["default"]["ENGINE"]:
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL must be a postgres:// URL, like DATABASE_URL."
        )
    DATABASES["replica"].setdefault("OPTIONS", {}).update(
        DATABASES["default"].get("OPTIONS", {})
    )
    DATABASES["replica"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASES["default"][
        "DISABLE_SERVER_SIDE_CURSORS"
    ]
    DATABASE_ROUTERS = ["reporting.replica.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: API rate limits and password-reset limits count here (login lockouts are in
# the database). Without CACHE_URL each process counts in its own memory, right for
# one process (the demo); with several web processes, point CACHE_URL at Redis so
# they share one count.
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"CACHE_URL must be a redis://, rediss:// or unix:// URL, not {CACHE_URL!r}"
        )
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "leadback",
            # A Redis that hangs must not hold up the intake: counting gives up
            # (feedback/ratelimits.py) and the request is served.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "leadback",
        }
    }

# Static files are served by WhiteNoise; nothing is loaded from a CDN.
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
WHITENOISE_USE_FINDERS = True

# Security -------------------------------------------------------------------
# Installs are served over TLS (directly or behind a proxy that sets
# X-Forwarded-Proto): secure cookies, HSTS and redirects to https. Plain http is for
# local development (DEBUG) or an explicit LEADBACK_HTTPS=false.
HTTPS = env_bool("LEADBACK_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# Probes and the metrics scraper talk to the process directly, inside the
# network, usually over plain HTTP: they are answered, not redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# django-axes checks every login first, the admin's and the portal's alike; then
# Django's own backend checks the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After LEADBACK_LOGIN_FAILURE_LIMIT failed logins of one user name from one client
# address, that pair is locked out for LEADBACK_LOGIN_LOCKOUT_MINUTES; a failed try
# during the lockout starts it again. Per pair, not per user name, so a stranger
# cannot lock a user out everywhere. Attempts are rows in the database (the admin's
# "Access attempts"; deleting one unlocks, as does `manage.py axes_reset_username`).
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("LEADBACK_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(
    minutes=env_int("LEADBACK_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "feedback.ratelimits.client_address"
AXES_LOCKOUT_CALLABLE = "feedback.portal.accounts.login_locked_out"

# The portal's sign-in (Django's auth views with templates/registration/).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:delivery-list"
# A password reset link works for this long (Django's default is three days).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 60 * 60 * 24)

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "leadback@localhost")

# API ------------------------------------------------------------------------
# The largest request body (JSON, form or the idempotency check's copy of it;
# CSV uploads have LEADBACK_IMPORT_MAX_BYTES): 413 above. A batch of 1,000 items
# with long notes and custom fields stays under 10 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024)
# Form and query variables per request (Django's default): 400 above.
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 1000)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["feedback.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON with the body cap, the nesting bound and the text check (README,
    # "Input limits").
    "DEFAULT_PARSER_CLASSES": ["feedback.api.negotiation.JSONBodyParser"],
    # DRF's, with the common "no preference" case answered without parsing.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "feedback.api.negotiation.ContentNegotiation",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "feedback.api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Leadback API",
    "DESCRIPTION": "Record deliveries and report lead feedback.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "FeedbackImportStatusEnum": "feedback.imports.models.FeedbackImport.Status",
    },
}

# Celery ---------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "broker" / "queue"
    _processed_dir = VAR_DIR / "broker" / "processed"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _processed_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        # Fanout tables; kombu's default is ./control in the working directory.
        "control_folder": str(VAR_DIR / "broker" / "control"),
        "store_processed": False,
    }
# Delivery state lives in the database; a message is only a nudge. Late acks and
# rejection on worker loss make a killed worker's message come back to the queue.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection around every task unless
# this is set: a new PostgreSQL session per delivery cost more CPU than the
# delivery itself. Connections are kept for that many tasks (per worker process)
# and CONN_MAX_AGE / health checks still apply (config/celery.py).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 500)
# CSV imports are CPU work, unlike delivery: a queue of their own lets them run on a
# prefork worker (one process per core) while delivery keeps its thread pool.
LEADBACK_IMPORT_QUEUE = env_str("LEADBACK_IMPORT_QUEUE", "celery")
CELERY_TASK_ROUTES = {
    f"feedback.tasks.{name}": {"queue": LEADBACK_IMPORT_QUEUE}
    for name in ("process_feedback_import_task", "help_feedback_import_task")
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Recovers what the fast path missed: lost messages, killed workers, retries.
    "sweep-notifications": {
        "task": "feedback.tasks.sweep_notifications_task",
        "schedule": env_float("LEADBACK_SWEEP_INTERVAL_S", 5.0),
        "options": {"expires": 30},
    },
    # The same for webhook messages to the seller's systems.
    "sweep-webhook-messages": {
        "task": "feedback.tasks.sweep_webhook_messages_task",
        "schedule": env_float("LEADBACK_SWEEP_INTERVAL_S", 5.0),
        "options": {"expires": 30},
    },
    # Creates the batch runs whose period has ended and sends those that are due.
    "run-batches": {
        "task": "feedback.tasks.run_batches_task",
        "schedule": env_float("LEADBACK_BATCH_INTERVAL_S", 60.0),
        "options": {"expires": 120},
    },
    # Queues CSV imports whose message was lost or whose worker died.
    "sweep-feedback-imports": {
        "task": "feedback.tasks.sweep_feedback_imports_task",
        "schedule": env_float("LEADBACK_IMPORT_SWEEP_INTERVAL_S", 30.0),
        "options": {"expires": 60},
    },
    # Deletes suppression entries older than their list's ttl_days.
    "expire-suppression-entries": {
        "task": "feedback.tasks.expire_suppression_entries_task",
        "schedule": env_float("LEADBACK_SUPPRESSION_EXPIRE_INTERVAL_S", 3600.0),
        "options": {"expires": 1800},
    },
    # Clears what the retention settings no longer keep (DESIGN §12; the audit
    # log's rows older than LEADBACK_AUDIT_RETENTION_DAYS among them), and
    # sends the erasure notices a lost message or a source's error left behind.
    "apply-retention": {
        "task": "feedback.tasks.apply_retention_task",
        "schedule": env_float("LEADBACK_RETENTION_INTERVAL_S", 3600.0),
        "options": {"expires": 1800},
    },
    "send-erasure-notices": {
        "task": "feedback.tasks.send_erasure_notices_task",
        "schedule": env_float("LEADBACK_SWEEP_INTERVAL_S", 5.0) * 12,
        "options": {"expires": 120},
    },
    "purge-idempotency-keys": {
        "task": "feedback.tasks.purge_idempotency_keys_task",
        "schedule": 3600.0,
    },
    # Keeps the reports' daily rollups within this many seconds of the data.
    # Sends the source digests whose time has come (each period once).
    "send-digests": {
        "task": "reporting.tasks.send_digests_task",
        "schedule": env_float("LEADBACK_DIGEST_INTERVAL_S", 60.0),
        "options": {"expires": 120},
    },
    "refresh-report-rollups": {
        "task": "reporting.tasks.refresh_rollups_task",
        "schedule": env_float("LEADBACK_ROLLUP_INTERVAL_S", 300.0),
        "options": {"expires": 600},
    },
    # Evaluates the monitors (DESIGN §11) and raises their alerts.
    "evaluate-monitors": {
        "task": "monitoring.tasks.evaluate_monitors_task",
        "schedule": env_float("LEADBACK_MONITOR_INTERVAL_S", 300.0),
        "options": {"expires": 600},
    },
    # Runs alert actions to retry and those a dead worker left behind.
    "run-alert-actions": {
        "task": "monitoring.tasks.run_alert_actions_task",
        "schedule": env_float("LEADBACK_SWEEP_INTERVAL_S", 5.0) * 6,
        "options": {"expires": 60},
    },
}
CELERY_TIMEZONE = "UTC"

# Leadback -------------------------------------------------------------------
# Retention of personal data (DESIGN §12, docs/privacy.md), in days; 0 keeps it.
# Request and response bodies of forwarding and webhook attempts:
LEADBACK_RETAIN_ATTEMPT_BODIES_DAYS = env_int(
    "LEADBACK_RETAIN_ATTEMPT_BODIES_DAYS", 90, minimum=0
)
# Uploaded CSV import files, once the import has finished:
LEADBACK_RETAIN_IMPORT_FILES_DAYS = env_int(
    "LEADBACK_RETAIN_IMPORT_FILES_DAYS", 90, minimum=0
)
# Batch files, once their run is sent or given up:
LEADBACK_RETAIN_BATCH_FILES_DAYS = env_int(
    "LEADBACK_RETAIN_BATCH_FILES_DAYS", 90, minimum=0
)
# A lead's personal data, counted from its last delivery:
LEADBACK_RETAIN_LEAD_DATA_DAYS = env_int("LEADBACK_RETAIN_LEAD_DATA_DAYS", 0, minimum=0)
# Proxies in front of the app that each append the address they were reached from
# to X-Forwarded-For (a load balancer, nginx). 0 trusts no header: the connection's
# address is the client's. Rate limits and login lockouts count per client address,
# so too high a number lets a client choose its own.
LEADBACK_TRUSTED_PROXIES = env_int("LEADBACK_TRUSTED_PROXIES", 0, minimum=0)
# Days the audit log (exports of personal data, configuration changes) is kept;
# older rows are deleted every hour.
LEADBACK_AUDIT_RETENTION_DAYS = env_int("LEADBACK_AUDIT_RETENTION_DAYS", 730, minimum=1)
# Rate limits ("<requests>/<s|min|h|day>", fixed windows counted in the cache). The
# API and the LeadConduit URL per API key; calls without a valid key (how keys would
# be guessed) per client address.
LEADBACK_API_RATE_KEY = env_rate("LEADBACK_API_RATE_KEY", "600/min")
LEADBACK_API_RATE_ANON = env_rate("LEADBACK_API_RATE_ANON", "60/min")
# Password-reset requests, per email address asked for and per client address.
LEADBACK_PASSWORD_RESET_RATE_EMAIL = env_rate(
    "LEADBACK_PASSWORD_RESET_RATE_EMAIL", "3/h"
)
LEADBACK_PASSWORD_RESET_RATE_CLIENT = env_rate(
    "LEADBACK_PASSWORD_RESET_RATE_CLIENT", "20/h"
)
# CIDRs that outbound deliveries may reach even though they are private or
# loopback addresses (the SSRF guard refuses them otherwise).
LEADBACK_OUTBOUND_ALLOWLIST = env_list("LEADBACK_OUTBOUND_ALLOWLIST", [])
# The pretend source the demo's configs forward to (feedback/demo/receiver.py),
# served under /demo/receiver/. `make demo` turns it on; never needed in production.
LEADBACK_DEMO_RECEIVER = env_bool("LEADBACK_DEMO_RECEIVER", False)
LEADBACK_BATCH_MAX_ITEMS = 1000
# Seconds each process keeps its copy of the suppression lists (which feedback
# adds to which list); a change made elsewhere takes effect within that time.
LEADBACK_SUPPRESSION_CACHE_S = env_float("LEADBACK_SUPPRESSION_CACHE_S", 5.0)
# Delivery engine (DESIGN §5.4). Seconds to wait after the n-th failed try; a
# notification is dead once the schedule is spent. Each wait varies by ±jitter.
LEADBACK_RETRY_SCHEDULE_S = env_float_list(
    "LEADBACK_RETRY_SCHEDULE_S",
    [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
)
LEADBACK_RETRY_JITTER = env_float("LEADBACK_RETRY_JITTER", 0.2)
# How long a queued message owns its row before the sweeper queues it again.
LEADBACK_QUEUE_LEASE_S = env_float("LEADBACK_QUEUE_LEASE_S", 60.0)
# Queue new notifications for the workers as soon as the intake commits (the
# fast path). Off for installs without a Celery worker, where cron runs
# `deliver_notifications --once`: a message no worker reads would hold each new
# row for a whole queue lease and pile up in the broker.
LEADBACK_QUEUE_ON_COMMIT = env_bool("LEADBACK_QUEUE_ON_COMMIT", True)
LEADBACK_SWEEP_BATCH = env_int("LEADBACK_SWEEP_BATCH", 500)
# Rows of one config a single delivery message carries (sent one after another).
LEADBACK_DELIVERY_BATCH = env_int("LEADBACK_DELIVERY_BATCH", 20)
# The sweeper waits while more messages than this are queued (back-pressure).
LEADBACK_SWEEP_MAX_BACKLOG = env_int("LEADBACK_SWEEP_MAX_BACKLOG", 50)
# Sync configs: how long the buyer's request may wait for the source.
LEADBACK_SYNC_DEADLINE_S = env_float("LEADBACK_SYNC_DEADLINE_S", 10.0)

# Returns resolution: the region a lead's phone is read in when the lead names
# no country (evidence checks), and the dispute evidence files' limits.
LEADBACK_PHONE_REGION = env_str("LEADBACK_PHONE_REGION", "US")

# /metrics is served to these networks, or with this bearer token from anywhere.
LEADBACK_METRICS_ALLOW_FROM = env_list(
    "LEADBACK_METRICS_ALLOW_FROM", ["127.0.0.1/32", "::1/128"]
)
LEADBACK_METRICS_TOKEN = env_str("LEADBACK_METRICS_TOKEN", "")
LEADBACK_EVIDENCE_MAX_BYTES = env_int("LEADBACK_EVIDENCE_MAX_BYTES", 5 * 1024 * 1024)
# Batch files (DESIGN §5.6): how long one transfer may wait on the network per
# step, and how long a worker owns a run it is sending before another may take
# it over (it must outlast the slowest upload of the biggest file).
LEADBACK_BATCH_TIMEOUT_S = env_float("LEADBACK_BATCH_TIMEOUT_S", 60.0)
LEADBACK_BATCH_LEASE_S = env_float("LEADBACK_BATCH_LEASE_S", 1800.0)
# Stored responses to Idempotency-Key requests are replayed for at least this long.
LEADBACK_IDEMPOTENCY_TTL_HOURS = env_int("LEADBACK_IDEMPOTENCY_TTL_HOURS", 24)
# CSV feedback imports. 20 MB holds well over 100,000 rows; the file is kept in the
# database until the import is deleted.
LEADBACK_IMPORT_MAX_BYTES = env_int("LEADBACK_IMPORT_MAX_BYTES", 20 * 1024 * 1024)
# Rows per transaction: progress moves and a killed worker resumes per chunk.
LEADBACK_IMPORT_CHUNK_ROWS = env_int("LEADBACK_IMPORT_CHUNK_ROWS", 2000)
# How long a worker owns an import after its last chunk before the sweep hands the
# import to another worker.
LEADBACK_IMPORT_LEASE_S = env_float("LEADBACK_IMPORT_LEASE_S", 120.0)
# Workers that process one import's chunks side by side (PostgreSQL): the one that
# picked the import up asks this many minus one others to help.
LEADBACK_IMPORT_WORKERS = env_int("LEADBACK_IMPORT_WORKERS", 2, minimum=1)

# Reports read pre-aggregated rollups: daily ones where they give the exact figures,
# monthly time-to-feedback histograms (docs/reports.md); false counts everything live.
LEADBACK_REPORT_ROLLUPS = env_bool("LEADBACK_REPORT_ROLLUPS", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
