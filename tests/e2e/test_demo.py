"""`make demo` on the embedded defaults: it seeds, serves, and stops on Ctrl-C."""

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.e2e.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
# No PostgreSQL, no Redis: the demo runs on what needs no server, whatever the
# environment of the suite says. Nor the suite's settings and key: the demo makes
# its own.
SUITE_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "LEADBACK_REQUIRE_SERVICES",
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "LEADBACK_HTTPS",
)


def test_make_demo_seeds_serves_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SUITE_VARIABLES}
    env |= {
        "LEADBACK_VAR_DIR": str(tmp_path / "var"),
        "LEADBACK_DEMO_PORT": str(port),
        "LEADBACK_DEMO_LEADS": "300",
    }
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        demo = subprocess.Popen(
            ["make", "--no-print-directory", "demo"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            assert demo.poll() is None, log.read_text()
            try:
                return requests.get(f"{base}/api/schema/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(serving, timeout=120, what="the demo to serve")
        key_file = tmp_path / "var" / "demo-secret-key"
        assert len(key_file.read_text().strip()) >= 50
        assert key_file.stat().st_mode & 0o077 == 0
        text = log.read_text()
        assert "user admin  password leadback-demo" in text
        # A source digest is configured, ready to preview in the admin.
        assert "Digest bluesky-leads-weekly: preview it at /admin/" in text
        assert "Evaluated 3 monitor(s)" in text  # the demo's monitors, as code
        curl = next(line for line in text.splitlines() if line.startswith("curl "))

        args = shlex.split(curl.replace("http://127.0.0.1:8000", base))
        url = next(a for a in args if a.startswith(base))
        key = args[args.index("-H") + 1].split(": ", 1)[1]
        form = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "-d")
        response = requests.post(url, headers={"X-API-Key": key}, data=form, timeout=10)
        assert response.status_code == 201, response.text
        assert response.json()["outcome"] == "success"

        wait_for(
            lambda: re.search(r"celery@\S+ ready", log.read_text()) is not None,
            timeout=60,
            what="the worker",
        )
        assert "beat: Starting" in log.read_text()
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            raise
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/schema/", timeout=2)
    leftovers = subprocess.run(
        ["pgrep", "-g", str(demo.pid)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "processes left after Ctrl-C"
