"""JobSettings / ElkOptions (the typed keywords) list exactly ElkSettings' fields."""

from __future__ import annotations

import typing
from dataclasses import fields

from elk_celery import ElkOptions, ElkSettings, JobSettings
from elk_celery.settings import APP_ONLY


def keys(td: type) -> set[str]:
    return set(td.__required_keys__) | set(td.__optional_keys__)  # type: ignore[attr-defined]


def test_job_settings_are_the_fields_less_the_app_wide_ones():
    # a new ElkSettings field needs its line in elk_celery/job_settings.py
    names = {f.name for f in fields(ElkSettings)}
    assert keys(JobSettings) == names - APP_ONLY, (
        f"elk_celery/job_settings.py JobSettings is out of date: missing "
        f"{sorted(names - APP_ONLY - keys(JobSettings))}, extra "
        f"{sorted(keys(JobSettings) - (names - APP_ONLY))}")
    assert keys(ElkOptions) == names, (
        f"ElkOptions: missing {sorted(names - keys(ElkOptions))}, "
        f"extra {sorted(keys(ElkOptions) - names)}")
    assert not JobSettings.__required_keys__  # type: ignore[attr-defined]


def test_the_types_allow_what_the_defaults_are():
    hints = typing.get_type_hints(ElkOptions)
    for f in fields(ElkSettings):
        default = f.default
        allowed = typing.get_args(hints[f.name]) or (hints[f.name],)
        flat = set()
        for a in allowed:
            flat |= set(typing.get_args(a) or (a,))
        if typing.get_origin(hints[f.name]) is typing.Literal:
            assert default in typing.get_args(hints[f.name]), f.name
        else:
            assert any(isinstance(default, t) for t in flat if isinstance(t, type)), \
                (f.name, default, hints[f.name])
