"""Metric names in PromQL expressions, and the sample names elk_celery exposes.

Not a PromQL parser: it drops string literals, label matchers, range and
subquery brackets, ``by``/``without``/``on``/``ignoring``/``group_*`` label
lists, Grafana variables and numbers, then keeps the identifiers that are
not function calls or keywords. ``promtool check rules`` validates the
syntax separately (test_dashboard.py, test_alerts.py).
"""

from __future__ import annotations

import re

from elk_celery.metrics import METRIC_TYPES

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "Inf", "NaN", "start", "end"}

#: Prometheus' own series, allowed in queries.
BUILTIN = {"up", "scrape_duration_seconds"}

#: Flower 2.2's metrics the dashboard uses (test_worker_metrics.py reads them
#: from a real Flower's /metrics).
FLOWER = {"flower_worker_online", "flower_events_total",
          "flower_worker_number_of_currently_executing_tasks"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_.:$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _LABEL_LIST.sub(" ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in _IDENT.finditer(s):
        token = m.group(0)
        if token in KEYWORDS or s[m.end():].lstrip().startswith("("):
            continue
        names.add(token)
    return names


def sample_names(types: dict[str, str] | None = None) -> set[str]:
    """Every series name a scrape can hold, from {PromQL name: type}:
    counters ``x_total`` (+ ``x_created``), histograms ``x_bucket``, ``x_sum``,
    ``x_count`` (+ ``x_created``), gauges and info metrics as they are."""
    out: set[str] = set()
    for name, kind in (types or METRIC_TYPES).items():
        if kind == "counter":
            assert name.endswith("_total"), name
            out |= {name, name[:-len("_total")] + "_created"}
        elif kind == "histogram":
            out |= {name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            out.add(name)
    return out


def unknown_names(expr: str) -> set[str]:
    """Names in ``expr`` that are neither elk_celery's, Flower's nor Prometheus' own."""
    known = sample_names() | FLOWER | BUILTIN
    return {n for n in metric_names(expr) if n not in known}
