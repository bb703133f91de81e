"""gunicorn settings for production: `gunicorn -c config/gunicorn.py config.wsgi`.

With PROMETHEUS_MULTIPROC_DIR set (an empty directory, emptied at every start),
each worker process writes its counts there and /metrics adds them up; a worker
that exits is marked dead so its gauges drop out (docs/scaling.md).
"""

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
