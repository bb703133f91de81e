"""PostgreSQL clusters of a test's own: a primary it may restart, a standby.

Each runs as the postgres user (the server refuses root) from a temporary
directory on a free port, with the same binaries as the machine's: restarting
or pausing the cluster the test session itself runs on would affect every
other test's connection.
"""

import glob
import shutil
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest

from tests.e2e.processes import free_port


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own: `initdb`, or a standby of another."""

    def __init__(self, *, standby_of: "PrivatePostgres | None" = None) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not binaries or shutil.which("runuser") is None:
            pytest.skip("needs PostgreSQL's server binaries and runuser")
        self.bin = Path(binaries[-1])
        self.root = Path(tempfile.mkdtemp(prefix="leadback-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        shutil.chown(self.root, "postgres", "postgres")
        if standby_of is None:
            self._as_postgres(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "--no-sync",
            )  # fmt: skip
        else:
            # A streaming standby: a base backup of the primary that keeps
            # replaying its WAL (-R writes standby.signal and primary_conninfo).
            self._as_postgres(
                "pg_basebackup", "-h", "127.0.0.1", "-p", str(standby_of.port),
                "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream",
            )  # fmt: skip

    def _as_postgres(self, command: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / command), *args],
            check=True,
            capture_output=True,
        )

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", *args,
        )  # fmt: skip

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "restart")

    def halt(self) -> None:
        """Stop the server at once, keeping its files."""
        with suppress(subprocess.CalledProcessError):
            self._pg_ctl("-m", "immediate", "stop")

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def value(self, sql: str, database: str = "postgres") -> object:
        """The first column of the first row `sql` returns (None without rows)."""
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql)
            row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]
