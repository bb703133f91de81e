"""What the benchmarks share: ports, statistics, the machine's load and revision."""

import contextlib
import os
import signal
import socket
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def revision() -> str:
    """The commit measured, and whether the app had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    app = ["config", "feedback", "sources", "reporting", "monitoring"]
    dirty = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", *app], cwd=ROOT, check=False
    ).returncode
    return commit + (" plus uncommitted changes to the app" if dirty else "")


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def replace_marked(path: Path, name: str, block: str) -> None:
    """Put `block` between the `<!-- {name} results: start/end -->` markers of
    `path` (appended with them if absent), leaving the rest of the page alone."""
    start = f"<!-- {name} results: start -->"
    end = f"<!-- {name} results: end -->"
    section = f"{start}\n{block.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM the group `process` leads (started with start_new_session, so a
    prefork pool's children are in it), then SIGKILL what is left after
    `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
