"""Runtime settings: per-job overrides stored in Redis (``elk set``,
``Job.set()``), applied by workers and the leader within one heartbeat,
without a restart.

A value is checked as at start: the job's settings with the override
applied must pass :class:`~elk_celery.settings.ElkSettings`'s validation,
so a bad one is refused with the reason before it is stored.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any, Mapping

from .errors import ConfigError
from .settings import ElkSettings

log = logging.getLogger("elk_celery")

#: Settings ``elk set`` may change while the job runs, and who applies them.
RUNTIME: dict[str, str] = {
    "task_window": "workers: partitions each node runs at once",
    "partition_size": "leader: IDs per partition planned from now on",
    "max_retries": "workers and leader: retries of a failed partition",
    "retry_backoff": "workers: backoff before the first retry (seconds)",
    "retry_backoff_max": "workers: longest backoff (seconds)",
    "max_partitions_per_second": "claims: cluster-wide rate limit (0 = none)",
    "defer_delay": "workers: resend delay of a refused claim (seconds)",
    "max_pending_partitions": "leader: cap on the pending backlog (0 = none)",
    "dispatch_batch": "leader: task messages per round",
    "worker_partition_multiple": "leader: least backlog per slot",
}


def parse_assignments(items: list[str] | tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """``["task_window=8", "max_retries="]`` -> ({"task_window": "8"},
    ["max_retries"]): an empty value drops the override."""
    values: dict[str, str] = {}
    unset: list[str] = []
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip().removeprefix("elk_")
        if not eq or not name:
            raise ConfigError(f"{item!r}: write NAME=VALUE (NAME= drops the override)")
        check_name(name)
        if value.strip() == "":
            unset.append(name)
        else:
            values[name] = value.strip()
    return values, unset


def check_name(name: str) -> None:
    if name not in RUNTIME:
        known = {f.name for f in fields(ElkSettings)}
        why = "it is read at start only: change it in the app's config and restart" \
            if name in known else "no such setting"
        raise ConfigError(f"{name} cannot be set at runtime ({why}); these can: "
                          f"{', '.join(sorted(RUNTIME))}")


def validated(base: ElkSettings, current: Mapping[str, str], values: Mapping[str, Any],
              unset: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The overrides to store after applying ``values`` and ``unset`` to
    ``current``; raises :class:`ConfigError` with the reason when the
    resulting settings are invalid."""
    for name in [*values, *unset]:
        check_name(name)
    merged = {k: v for k, v in current.items() if k in RUNTIME and k not in unset}
    merged.update({k: str(v) for k, v in values.items()})
    try:
        _apply(base, merged)
    except ConfigError as exc:
        raise ConfigError(f"refused: {exc}") from None
    return {k: merged[k] for k in values}


def _typed(raw: Mapping[str, str]) -> dict[str, Any]:
    # "none" for the settings that take None (task_window, partition_size)
    return {k: (None if str(v).lower() == "none" else v) for k, v in raw.items()}


def effective(base: ElkSettings, runtime: Mapping[str, str]) -> ElkSettings:
    """``base`` with the stored overrides; one that no longer validates
    (edited by hand) is left out, with a warning."""
    good = {k: v for k, v in runtime.items() if k in RUNTIME}
    try:
        return _apply(base, good)
    except ConfigError:
        pass
    out = base
    for k, v in good.items():
        try:
            out = _apply(out, {k: v})
        except ConfigError as exc:
            log.warning("elk: ignoring the runtime setting %s=%r: %s", k, v, exc)
    return out


def _apply(base: ElkSettings, raw: Mapping[str, str]) -> ElkSettings:
    import dataclasses
    typed = _typed(raw)
    # replace() skips None values: task_window=none must reach the dataclass
    return dataclasses.replace(base, **typed) if typed else base


def sources(app: ElkSettings, job_overrides: Mapping[str, Any], runtime: Mapping[str, str],
            effective_settings: ElkSettings) -> dict[str, dict[str, Any]]:
    """Each runtime-settable setting's effective value and where it comes
    from: ``runtime`` (elk set), ``job`` (@partitioned_task), ``app``
    (app.conf or Elk(app, ...)) or ``default``."""
    default = ElkSettings()
    out = {}
    for name in RUNTIME:
        if name in runtime:
            src = "runtime"
        elif job_overrides.get(name) is not None:
            src = "job"
        elif getattr(app, name) != getattr(default, name):
            src = "app"
        else:
            src = "default"
        out[name] = {"value": getattr(effective_settings, name), "source": src}
    return out
