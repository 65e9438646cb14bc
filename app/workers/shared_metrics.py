"""One Prometheus view across the processes of a worker gateway (prometheus_client's multiprocess mode).

Each process writes its values to `<dir>/<kind>_<pid>.db`; any worker's /metrics
combines every file (app/metrics.py, `GatewayMetrics.render`). prometheus_client
picks where values live once per process, when the first metric value is made, so
`write_to` must run before the process builds its metrics. The supervisor creates
the directory empty and removes it at exit; a dead worker's gauges are dropped
(`forget`) while its counters stay counted.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def write_to(directory: Path) -> None:
    """From now on this process's new metric values live in files under `directory`."""
    from prometheus_client import values

    os.environ[ENV] = str(directory)  # where each value file is opened (read when a value is made)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def forget(pid: int, directory: Path) -> None:
    """A process ended: drop its live gauges (counters and histograms stay: what it counted happened)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(directory))
