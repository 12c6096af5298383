"""Prometheus metrics for elk_celery.

* :class:`PrometheusHooks` — the hook subscriber that updates this
  process's metric families (:mod:`.families`);
* :class:`ClusterCollector` — cluster-wide gauges read from Redis at scrape
  time (:mod:`.cluster`);
* :func:`prepare_worker` — called by the worker bootstep before the pool
  forks (hooks, multiprocess folder, child-exit handling);
* :func:`start_metrics_server` — the /metrics endpoint a worker serves,
  multiprocess-aware for Celery's prefork pool (:mod:`.server`, which
  explains why ``PROMETHEUS_MULTIPROC_DIR`` must be set before ``celery``
  starts);
* :data:`METRIC_NAMES` — every metric name /metrics can expose, as PromQL
  spells it (counters with ``_total``, histograms by their base name, info
  metrics with ``_info``); :data:`METRIC_TYPES` maps each to its type.
"""

from __future__ import annotations

from .cluster import CLUSTER_FAMILY_TYPES, ClusterCollector
from .families import FAMILY_TYPES
from .hooks import PrometheusHooks
from .server import (MetricsServer, ensure_hooks, multiprocess_dir, prepare_worker,
                     setup_multiprocess, start_metrics_server)

METRIC_TYPES: dict[str, str] = {**FAMILY_TYPES, **CLUSTER_FAMILY_TYPES}
METRIC_NAMES: frozenset[str] = frozenset(METRIC_TYPES)

__all__ = [
    "METRIC_NAMES", "METRIC_TYPES", "ClusterCollector", "MetricsServer", "PrometheusHooks",
    "ensure_hooks", "multiprocess_dir", "prepare_worker", "setup_multiprocess",
    "start_metrics_server",
]
