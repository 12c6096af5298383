"""Runtime settings (runtime.py): parsing, validation as at start, sources."""

from __future__ import annotations

import pytest

from elk_celery.errors import ConfigError
from elk_celery.runtime import RUNTIME, effective, parse_assignments, sources, validated
from elk_celery.settings import ElkSettings


def test_parse_assignments():
    assert parse_assignments(["task_window=8", "elk_max_retries=5", "retry_backoff="]) == (
        {"task_window": "8", "max_retries": "5"}, ["retry_backoff"])
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_assignments(["task_window"])
    with pytest.raises(ConfigError, match="read at start only"):
        parse_assignments(["redis_url=redis://x"])
    with pytest.raises(ConfigError, match="no such setting"):
        parse_assignments(["task_windw=3"])


@pytest.mark.parametrize("name,value,why", [
    ("task_window", "0", "must be an integer >= 1"),
    ("task_window", "many", "expected int"),
    ("max_retries", "-1", "must be an integer >= 0"),
    ("retry_backoff", "-2", "must be a duration >= 0"),
    ("max_partitions_per_second", "-1", "must be >= 0"),
    ("partition_size", "0", "must be an integer >= 1"),
    # `elk set` of a number no script takes: every claim or round failed with it
    ("max_partitions_per_second", "inf", "must be a finite number"),
    ("defer_delay", "inf", "must be a finite number"),
    ("retry_backoff_max", "1e12", "at most 1e"),
    ("max_retries", "9223372036854775807", "at most 2"),
    ("worker_partition_multiple", "10000000000000000", "at most 2"),
])
def test_a_bad_value_is_refused_with_the_reason(name, value, why):
    with pytest.raises(ConfigError, match=why):
        validated(ElkSettings(), {}, {name: value})


def test_values_are_checked_together_with_the_stored_ones():
    base = ElkSettings(retry_backoff=1.0)
    ok = validated(base, {"task_window": "4"}, {"max_retries": "5"})
    assert ok == {"max_retries": "5"}
    s = effective(base, {"task_window": "4", "max_retries": "5", "retry_backoff": "0.5",
                         "task_window_typo": "x"})
    assert (s.task_window, s.max_retries, s.retry_backoff) == (4, 5, 0.5)
    # none drops a value back to "the pool size"
    assert effective(ElkSettings(task_window=3), {"task_window": "none"}).task_window is None


def test_a_stored_value_edited_by_hand_is_ignored_alone():
    s = effective(ElkSettings(), {"task_window": "zero", "max_retries": "7"})
    assert s.task_window is None and s.max_retries == 7


def test_sources_say_where_each_value_comes_from():
    app = ElkSettings(max_retries=9)
    eff = effective(app.replace(task_window=2), {"retry_backoff": "3"})
    rows = sources(app, {"task_window": 2}, {"retry_backoff": "3"}, eff)
    assert set(rows) == set(RUNTIME)
    assert rows["retry_backoff"] == {"value": 3.0, "source": "runtime"}
    assert rows["task_window"] == {"value": 2, "source": "job"}
    assert rows["max_retries"] == {"value": 9, "source": "app"}
    assert rows["dispatch_batch"]["source"] == "default"
