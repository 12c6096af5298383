"""ElkSettings: defaults from the seed, ``elk_*`` Celery keys, validation naming the key."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest
from celery import Celery

from elk_celery import ConfigError, ElkSettings


def test_defaults_follow_the_seed_table():
    s = ElkSettings()
    assert s.heartbeat_interval == 10.0
    assert s.partition_lock_expiry == 180.0  # 3 min
    assert s.leader_lock_expiry == 30.0
    assert s.worker_partition_multiple == 5
    assert s.task_window is None  # the worker's pool size
    assert s.allow_preemption is False
    assert s.strategy == "hash"
    # seed options all present
    names = {f.name for f in fields(ElkSettings)}
    assert {"heartbeat_interval", "leader_election_interval", "partition_lock_expiry",
            "leader_lock_expiry", "worker_partition_multiple", "task_window",
            "allow_preemption", "allocation_interval", "redis_url", "max_retries"} <= names


def test_node_expiry_defaults_to_three_heartbeats():
    assert ElkSettings(heartbeat_interval=2).node_expiry_s == 6.0
    assert ElkSettings(heartbeat_interval=2, node_expiry=5).node_expiry_s == 5.0


def test_ms_rounds_and_never_returns_zero():
    s = ElkSettings(heartbeat_interval=0.2, partition_lock_expiry=0.5, retry_backoff=0)
    assert s.ms("partition_lock_expiry") == 500
    assert s.ms("node_expiry") == 600
    assert s.ms("retry_backoff") == 1  # scripts never get a zero duration


def test_timedelta_is_accepted_for_durations():
    s = ElkSettings(partition_lock_expiry=timedelta(minutes=2), heartbeat_interval=timedelta(seconds=5))
    assert s.partition_lock_expiry == 120.0 and s.heartbeat_interval == 5.0


def test_strings_from_config_files_are_coerced():
    s = ElkSettings.from_celery_conf({
        "elk_heartbeat_interval": "2.5", "elk_task_window": "4", "elk_allow_preemption": "yes",
        "elk_max_retries": "0", "elk_metrics_port": "9100"})
    assert s.heartbeat_interval == 2.5 and isinstance(s.heartbeat_interval, float)
    assert s.task_window == 4 and isinstance(s.task_window, int)
    assert s.allow_preemption is True
    assert s.max_retries == 0
    assert s.metrics_port == 9100
    assert ElkSettings(allow_preemption="off").allow_preemption is False
    assert ElkSettings(task_window=3.0).task_window == 3


def test_leader_process_is_auto_by_default_and_takes_config_strings():
    assert ElkSettings().leader_process is None  # auto: a process under prefork
    assert ElkSettings.from_celery_conf({"elk_leader_process": "no"}).leader_process is False
    assert ElkSettings(leader_process="true").leader_process is True


def test_reads_a_real_celery_app_conf_and_kwargs_win():
    app = Celery("t", set_as_current=False)
    app.conf.elk_task_window = 3
    app.conf.elk_partition_lock_expiry = 60
    app.conf.elk_namespaces = ["read", "by", "the", "cli"]
    s = ElkSettings.from_celery_conf(app.conf, task_window=7)
    assert s.task_window == 7  # keyword wins over conf
    assert s.partition_lock_expiry == 60.0  # conf wins over default
    assert s.heartbeat_interval == 10.0  # default


def test_a_misspelt_key_in_the_celery_conf_is_named():
    app = Celery("t", set_as_current=False)
    app.conf.elk_task_widow = 3
    with pytest.raises(ConfigError, match="unknown setting.*elk_task_widow"):
        ElkSettings.from_celery_conf(app.conf)


def test_replace_applies_job_overrides_and_ignores_none():
    base = ElkSettings(task_window=2)
    job = base.replace(task_window=5, max_retries=None)
    assert job.task_window == 5 and job.max_retries == base.max_retries
    assert base.task_window == 2  # frozen original unchanged


def test_unknown_settings_are_named():
    with pytest.raises(ConfigError, match="unknown elk setting.*task_windw"):
        ElkSettings.from_celery_conf({}, task_windw=3)
    with pytest.raises(ConfigError, match="bogus"):
        ElkSettings().replace(bogus=1)


@pytest.mark.parametrize("kwargs, key", [
    ({"strategy": "json"}, "elk_strategy"),
    ({"heartbeat_interval": 0}, "elk_heartbeat_interval"),
    ({"heartbeat_interval": -1}, "elk_heartbeat_interval"),
    ({"heartbeat_interval": "soon"}, "elk_heartbeat_interval"),
    ({"leader_election_interval": 0}, "elk_leader_election_interval"),
    ({"leader_lock_expiry": 1, "leader_election_interval": 5}, "elk_leader_lock_expiry"),
    ({"partition_lock_expiry": 0}, "elk_partition_lock_expiry"),
    ({"partition_lock_expiry": 15, "heartbeat_interval": 10}, "elk_partition_lock_expiry"),
    ({"allocation_interval": -5}, "elk_allocation_interval"),
    ({"worker_partition_multiple": 0}, "elk_worker_partition_multiple"),
    ({"task_window": 0}, "elk_task_window"),
    ({"task_window": 1.5}, "elk_task_window"),
    ({"task_window": True}, "elk_task_window"),
    ({"task_window": "many"}, "elk_task_window"),
    ({"allow_preemption": "maybe"}, "elk_allow_preemption"),
    ({"allow_preemption": 1.5}, "elk_allow_preemption"),
    ({"leader_process": "sometimes"}, "elk_leader_process"),
    ({"max_retries": -1}, "elk_max_retries"),
    ({"retry_backoff": -1}, "elk_retry_backoff"),
    ({"retry_backoff_max": 0}, "elk_retry_backoff_max"),
    ({"defer_delay": -0.1}, "elk_defer_delay"),
    ({"dispatch_batch": 0}, "elk_dispatch_batch"),
    ({"max_pending_partitions": -1}, "elk_max_pending_partitions"),
    ({"node_expiry": 5, "heartbeat_interval": 10}, "elk_node_expiry"),
    ({"circuit_breaker_consecutive_failures": 0}, "elk_circuit_breaker_consecutive_failures"),
    ({"circuit_breaker_open_timeout": 0}, "elk_circuit_breaker_open_timeout"),
    ({"circuit_breaker_half_open_max_requests": 0},
     "elk_circuit_breaker_half_open_max_requests"),
    ({"metrics_port": 70000}, "elk_metrics_port"),
    ({"redis_url": "http://localhost"}, "elk_redis_url"),
    ({"redis_url": 6379}, "elk_redis_url"),
    ({"key_prefix": None}, "elk_key_prefix"),
    # numbers the scripts cannot take (every round or claim failed with them)
    ({"max_retries": 2 ** 63 - 1}, "elk_max_retries"),
    ({"max_pending_partitions": 2 ** 60}, "elk_max_pending_partitions"),
    ({"worker_partition_multiple": 10 ** 16}, "elk_worker_partition_multiple"),
    ({"partition_size": 2 ** 60}, "elk_partition_size"),
    ({"task_window": 10 ** 16}, "elk_task_window"),
    ({"max_partitions_per_second": float("inf")}, "elk_max_partitions_per_second"),
    ({"max_partitions_per_second": 1e13}, "elk_max_partitions_per_second"),
    ({"defer_delay": float("inf")}, "elk_defer_delay"),
    ({"retry_backoff_max": float("inf")}, "elk_retry_backoff_max"),
    ({"allocation_interval": float("nan")}, "elk_allocation_interval"),
    ({"retry_backoff": float("nan")}, "elk_retry_backoff"),
    ({"partition_lock_expiry": 1e13}, "elk_partition_lock_expiry"),
    ({"target_partition_seconds": float("inf")}, "elk_target_partition_seconds"),
])
def test_every_bad_value_names_its_elk_key(kwargs, key):
    with pytest.raises(ConfigError) as info:
        ElkSettings(**kwargs)
    assert key in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_value_from_celery_conf_names_the_key_and_value():
    with pytest.raises(ConfigError) as info:
        ElkSettings.from_celery_conf({"elk_partition_lock_expiry": "three minutes"})
    msg = str(info.value)
    assert "elk_partition_lock_expiry" in msg and "three minutes" in msg


def test_settings_are_frozen():
    s = ElkSettings()
    with pytest.raises(Exception):
        s.task_window = 9  # type: ignore[misc]


def test_the_largest_accepted_values_are_ones_the_scripts_take():
    """The bounds named in the errors: durations up to MAX_SECONDS, counts up
    to 2^53-1 (Lua's exact integers), rates up to MAX_RATE."""
    from elk_celery.models import MAX_EXACT as MAX_COUNT
    from elk_celery.settings import MAX_RATE, MAX_SECONDS
    s = ElkSettings(max_retries=MAX_COUNT, retry_backoff_max=MAX_SECONDS,
                    max_partitions_per_second=MAX_RATE, defer_delay=MAX_SECONDS)
    assert s.ms("retry_backoff_max") <= 2 ** 53 - 1
    assert s.max_partitions_per_second * 1000 <= 2 ** 53 - 1
    with pytest.raises(ConfigError, match="at most"):
        ElkSettings(max_retries=MAX_COUNT + 1)
