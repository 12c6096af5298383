"""Starts the metrics side in a worker when configured (kept apart so the
core never imports prometheus_client unless metrics are wanted)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("elk_celery.metrics")


def add_metrics_hooks(elk: Any) -> None:
    """Subscribe the Prometheus hooks (main process, before the pool forks)."""
    if elk.settings.metrics_port is None:
        return
    from .metrics import PrometheusHooks
    if not any(isinstance(h, PrometheusHooks) for h in elk.hooks.hooks):
        elk.hooks.add(PrometheusHooks())


def start_metrics_if_configured(elk: Any) -> Any:
    """Serve /metrics from the worker's main process when elk_metrics_port is set."""
    if elk.settings.metrics_port is None:
        return None
    from .metrics import start_metrics_server
    stores = [job.store for job in elk.jobs.values()]
    return start_metrics_server(elk.settings, stores)
