"""``elk pause|resume|cancel|set NAMESPACE``: job control from the CLI
(the same as ``get_elk(app).job(ns).pause()`` ... in Python)."""

from __future__ import annotations

from typing import Any

import click

from .. import runtime
from ..errors import ConfigError
from ..store.namespace import Control
from ._context import state_of
from .commands import emit_json, elk, json_option

stop_option = click.option(
    "--stop-running", is_flag=True,
    help="Running partitions stop at their next block (or checkpoint) and are handed back; "
         "without it they finish.")


def _describe(ns: str, c: Control) -> str:
    how = "; running partitions stop at their next block" if c.stop_running else \
        ("; running partitions finish" if c.state != "running" else "")
    return f"{ns}: {c.state}{how}"


def _control(ctx: click.Context, namespace: str, action: str, stop_running: bool,
             as_json: bool) -> None:
    st = state_of(ctx)
    t = st.targets([namespace])[0]
    c = t.store.set_control(action, stop_running=stop_running)
    if as_json:
        emit_json({"namespace": namespace, "state": c.state, "stop_running": c.stop_running})
    else:
        click.echo(_describe(namespace, c))


@elk.command()
@click.argument("namespace")
@stop_option
@json_option
@click.pass_context
def pause(ctx: click.Context, namespace: str, stop_running: bool, as_json: bool) -> None:
    """Pause a job: no planning, no messages, claims refused (their messages are
    dropped and sent again after resume); running partitions finish."""
    _control(ctx, namespace, "pause", stop_running, as_json)


@elk.command()
@click.argument("namespace")
@json_option
@click.pass_context
def resume(ctx: click.Context, namespace: str, as_json: bool) -> None:
    """Resume a paused job: planning and sending go on, held-back partitions first."""
    _control(ctx, namespace, "resume", False, as_json)


@elk.command()
@click.argument("namespace")
@stop_option
@json_option
@click.pass_context
def cancel(ctx: click.Context, namespace: str, stop_running: bool, as_json: bool) -> None:
    """Cancel a job for good: like pause, but resume is refused; its state stays
    for inspection until `elk reset`."""
    _control(ctx, namespace, "cancel", stop_running, as_json)


@elk.command("set")
@click.argument("namespace")
@click.argument("assignments", nargs=-1, metavar="NAME=VALUE...")
@json_option
@click.pass_context
def set_(ctx: click.Context, namespace: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Change a job's settings while it runs: workers and the leader apply
    them within one heartbeat. NAME= drops an override. Without assignments,
    shows the settings that can be changed, their values and sources."""
    st = state_of(ctx)
    t = st.targets([namespace])[0]
    job = st.jobs().get(namespace)
    base = job.base_settings if job is not None else t.settings or st.settings
    current = t.store.runtime_settings()
    if assignments:
        try:
            values, unset = runtime.parse_assignments(assignments)
            stored = runtime.validated(base, current, values, unset)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        t.store.set_runtime_settings(stored, unset)
        current = t.store.runtime_settings()
    rows = runtime.sources(st.settings, job.spec.overrides if job is not None else {}, current,
                           runtime.effective(base, current))
    if as_json:
        emit_json({"namespace": namespace, "settings": rows})
        return
    for name, row in rows.items():
        click.echo(f"{namespace}: {name} = {_fmt(row['value'])}  ({row['source']})")


def _fmt(v: Any) -> str:
    return "none" if v is None else str(v)
