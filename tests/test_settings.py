"""Settings come from the environment; production values pass the deploy checks."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    *args: str, env: dict[str, str], check: bool = False
) -> subprocess.CompletedProcess[str]:
    """The project's Python in a fresh process, with only PATH and `env`."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_python("manage.py", *args, env=env)


PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "leadback.example.com",
    "LEADBACK_HTTPS": "true",
    "DATABASE_URL": "postgres://leadback@db.example.com:5432/leadback",
    "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
}


# A key of the install's own, as every environment outside DEBUG must set; the
# embedded one is refused (test_the_embedded_key_is_refused_outside_debug).
KEY_ENV = {"SECRET_KEY": secrets.token_urlsafe(50)}


def test_check_deploy_passes_with_production_values(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION_ENV, "LEADBACK_VAR_DIR": str(tmp_path)},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_passes_with_the_defaults_and_a_real_key(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**KEY_ENV, "LEADBACK_VAR_DIR": str(tmp_path)},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("manage.py", "check"),
        ("manage.py", "migrate", "--noinput"),
        ("-c", "import config.wsgi"),
    ],
)
def test_the_embedded_key_is_refused_outside_debug(tmp_path, command):
    result = run_python(*command, env={"LEADBACK_VAR_DIR": str(tmp_path)})

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "leadback.sqlite3").exists()


def test_the_embedded_key_is_accepted_for_local_development(tmp_path):
    result = run_manage(
        "check", env={"DEBUG": "true", "LEADBACK_VAR_DIR": str(tmp_path)}
    )

    assert result.returncode == 0, result.stderr


def test_check_deploy_warns_when_https_is_switched_off(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**KEY_ENV, "LEADBACK_HTTPS": "false", "LEADBACK_VAR_DIR": str(tmp_path)},
    )

    assert result.returncode != 0
    assert "security.W004" in result.stderr  # no HSTS
    assert "security.W008" in result.stderr  # no redirect to https


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("DATABASE_CONN_MAX_AGE", "soon", "DATABASE_CONN_MAX_AGE must be an integer"),
        ("LEADBACK_IMPORT_WORKERS", "0", "LEADBACK_IMPORT_WORKERS must be at least 1"),
        ("LEADBACK_API_RATE_KEY", "lots", "LEADBACK_API_RATE_KEY must be a rate like"),
        ("LEADBACK_API_RATE_ANON", "60/week", "LEADBACK_API_RATE_ANON must be a rate"),
        ("LEADBACK_API_RATE_ANON", "0/min", "must allow at least 1 request"),
        ("CACHE_URL", "memcached://c:11211", "CACHE_URL must be a redis://"),
        (
            "LEADBACK_TRUSTED_PROXIES",
            "-1",
            "LEADBACK_TRUSTED_PROXIES must be at least 0",
        ),
    ],
)
def test_bad_setting_values_are_named(tmp_path, name, value, message):
    result = run_manage(
        "check", env={**KEY_ENV, name: value, "LEADBACK_VAR_DIR": str(tmp_path)}
    )

    assert result.returncode != 0
    assert message in result.stderr


def test_settings_read_from_environment(tmp_path):
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.TIME_ZONE, "
        "s.ALLOWED_HOSTS, s.LEADBACK_OUTBOUND_ALLOWLIST, s.DEBUG)"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://u@h:5432/d",
        "CELERY_BROKER_URL": "amqp://guest@localhost//",
        "TIME_ZONE": "America/Chicago",
        "ALLOWED_HOSTS": "a.example, b.example",
        "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32,10.1.0.0/16",
        "DEBUG": "true",
    }

    result = run_python("-c", script, env=env, check=True)

    assert result.stdout.split(" ", 3)[:3] == [
        "django.db.backends.postgresql",
        "amqp://guest@localhost//",
        "America/Chicago",
    ]
    assert "['a.example', 'b.example']" in result.stdout
    assert "['127.0.0.1/32', '10.1.0.0/16']" in result.stdout
    assert result.stdout.strip().endswith("True")


def test_rate_limits_and_cache_read_from_environment(tmp_path):
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.LEADBACK_API_RATE_KEY, s.LEADBACK_API_RATE_ANON, "
        "s.CACHES['default']['BACKEND'], s.CACHES['default']['LOCATION'])"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
        "LEADBACK_API_RATE_KEY": "50/s",
        "LEADBACK_API_RATE_ANON": "1000/day",
        "CACHE_URL": "redis://cache.example:6379/1",
    }

    result = run_python("-c", script, env=env, check=True)

    assert result.stdout.split() == [
        "(50,",
        "1)",
        "(1000,",
        "86400)",
        "django.core.cache.backends.redis.RedisCache",
        "redis://cache.example:6379/1",
    ]


def test_embedded_defaults_need_no_server(tmp_path):
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['NAME']); print(s.CELERY_BROKER_URL); "
        "print(s.CACHES['default']['BACKEND'])"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
    }
    result = run_python("-c", script, env=env, check=True)

    database, broker, cache = result.stdout.split()
    assert database == str(tmp_path / "leadback.sqlite3")
    assert broker == "filesystem://"
    assert cache == "django.core.cache.backends.locmem.LocMemCache"
    assert (tmp_path / "broker" / "queue").is_dir()


@pytest.mark.parametrize(
    ("queue", "expected"), [(None, "celery"), ("imports", "imports")]
)
def test_csv_imports_go_to_their_queue(tmp_path, queue, expected):
    script = (
        "import django; django.setup(); from config.celery import app; "
        "route = app.amqp.router.route; "
        "print(*(route({}, f'feedback.tasks.{name}')['queue'].name for name in "
        "('process_feedback_import_task', 'help_feedback_import_task', "
        "'deliver_notifications_task')))"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
    }
    if queue:
        env["LEADBACK_IMPORT_QUEUE"] = queue

    result = run_python("-c", script, env=env, check=True)

    assert result.stdout.split() == [expected, expected, "celery"]


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        (None, "{'server_side_binding': True, 'prepare_threshold': 5}"),
        ("false", "{}"),
    ],
)
def test_postgresql_prepares_statements_unless_switched_off(tmp_path, switch, expected):
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default'].get('OPTIONS', {}))"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://u@h:5432/d",
    }
    if switch:
        env["DATABASE_PREPARED_STATEMENTS"] = switch

    result = run_python("-c", script, env=env, check=True)

    assert result.stdout.strip() == expected


def test_the_wsgi_app_loads_its_views_and_keeps_them_out_of_full_collections(
    tmp_path,
):
    script = (
        "import gc, sys; import config.wsgi; "
        "print('feedback.api.views' in sys.modules, gc.get_freeze_count() > 10_000, "
        "len(gc.get_objects()) < 1_000)"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
    }

    result = run_python("-c", script, env=env, check=True)

    assert result.stdout.split() == ["True", "True", "True"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DATABASE_REPLICA_URL": "postgres://u@replica:5432/d"},
            "DATABASE_REPLICA_URL needs DATABASE_URL to be PostgreSQL",
        ),
        (
            {
                "DATABASE_URL": "postgres://u@h:5432/d",
                "DATABASE_REPLICA_URL": "sqlite:////tmp/replica.db",
            },
            "DATABASE_REPLICA_URL must be a postgres:// URL",
        ),
        (
            {
                "DATABASE_URL": "postgres://u@h:5432/d",
                "DATABASE_REPLICA_URL": "mongodb://replica/d",
            },
            "DATABASE_REPLICA_URL:",
        ),
    ],
)
def test_a_replica_needs_postgresql_on_both_sides(tmp_path, env, message):
    result = run_manage(
        "check", env={**KEY_ENV, **env, "LEADBACK_VAR_DIR": str(tmp_path)}
    )

    assert result.returncode != 0
    assert message in result.stderr


def test_a_replica_is_read_only_for_reports_and_never_migrated(tmp_path):
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "from django.db import router; from feedback.models import Buyer; "
        "from reporting import replica; "
        "r = s.DATABASES['replica']; "
        "print(r['HOST'], r['TEST']['MIRROR'], r['OPTIONS']); "
        "print(router.db_for_read(Buyer), router.db_for_write(Buyer)); "
        "replica._reading_replica.set(True); "
        "print(router.db_for_read(Buyer), router.db_for_write(Buyer)); "
        "print(router.allow_migrate('replica', 'feedback'), "
        "router.allow_migrate('default', 'feedback'))"
    )
    env = {
        **KEY_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEADBACK_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://u@primary:5432/d",
        "DATABASE_REPLICA_URL": "postgres://u@replica:5432/d",
    }

    result = run_python("-c", script, env=env, check=True)

    assert result.stdout.splitlines() == [
        "replica default {'server_side_binding': True, 'prepare_threshold': 5}",
        "default default",
        "replica default",
        "False True",
    ]
