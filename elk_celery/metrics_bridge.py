"""Starts the metrics side in a worker when configured (kept apart so the
core never imports prometheus_client unless metrics are wanted)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("elk_celery.metrics")


def prepare_metrics(elk: Any, worker: Any = None) -> None:
    """Main process, before the pool forks: subscribe the Prometheus hooks
    (children inherit them) and prepare the multiprocess folder."""
    if elk.settings.metrics_port is None:
        return
    from .metrics import prepare_worker
    prepare_worker(elk, worker)


def start_metrics_if_configured(elk: Any) -> Any:
    """Serve /metrics from the worker's main process when elk_metrics_port is set."""
    if elk.settings.metrics_port is None:
        return None
    from .metrics import start_metrics_server
    stores = [job.store for job in elk.jobs.values()]
    return start_metrics_server(elk.settings, stores)


def leader_process_started(elk: Any) -> None:
    """In the leader process: its metrics count from zero (multiprocess mode)."""
    if elk.settings.metrics_port is not None:
        from .metrics.server import process_started
        process_started()


def leader_process_exiting(elk: Any) -> None:
    if elk.settings.metrics_port is not None:
        from .metrics.server import process_exiting
        process_exiting()
