"""The ``elk`` command group: ``celery -A proj elk <command>``.

Registered through the ``celery.commands`` entry point, like Flower; Celery
loads the app and passes it in ``ctx.obj.app``. Without Celery around it
(``python -m elk_celery.cli -A proj ...``), the group loads the app itself.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

import click
import redis
from rich.console import Console
from rich.padding import Padding
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from ..breaker import CircuitBreaker
from ..errors import ElkError
from ..eta import describe
from ..gaps import GapDetector
from ..models import Status
from . import _data
from ..redis_urls import redact
from ._context import CLIState, load_app, state_of

#: ``elk watch`` exit codes besides 0 (all done, none failed).
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130


class ElkGroup(click.Group):
    """Turns Redis and elk errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            st = ctx.find_object(CLIState)
            where = redact(st.url) if st is not None else "?"
            raise click.ClickException(f"cannot reach Redis at {where}: {exc}") from None
        except redis.ResponseError as exc:
            raise click.ClickException(f"Redis refused a command: {exc}") from None
        except ElkError as exc:
            raise click.ClickException(str(exc)) from None


def _console(ctx: click.Context) -> Console:
    st = state_of(ctx)
    # the file is looked up when printing, so click's test runner captures it
    return Console(no_color=st.no_color, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 160)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def namespace_option(required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "-n", "--namespace", "namespaces", multiple=True, required=required,
        metavar="NAME",
        help="Namespace (job) to work on; repeat for several. Default: the app's jobs.")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


@click.group(name="elk", cls=ElkGroup)
@click.option("-A", "--app", "app_name", metavar="MODULE",
              help="Celery app to load, when not run as `celery -A proj elk`.")
@click.option("--redis-url", metavar="URL",
              help="Redis holding elk state (default: the app's elk_redis_url or Redis broker, "
                   "else $ELK_REDIS_URL, else redis://127.0.0.1:6379/0).")
@click.pass_context
def elk(ctx: click.Context, app_name: str | None, redis_url: str | None) -> None:
    """elk_celery: partitioned jobs - status, partitions, gaps, breaker, watch, reset."""
    parent = ctx.obj  # celery's CLIContext when run as `celery ... elk`
    app = getattr(parent, "app", None)
    if app_name:
        app = load_app(app_name)
    ctx.obj = CLIState(app=app, redis_url_option=redis_url,
                       no_color=bool(getattr(parent, "no_color", False)))


# -------------------------------------------------------------------- status

def _fmt_rate(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:,.1f} {unit}/s"


def _eta_text(s: dict[str, Any]) -> str:
    """The ETA (eta.py): a number with its range, or why there is none."""
    return describe(s["eta"])


def _render_status(console: Console, s: dict[str, Any]) -> None:
    c = s["counts"]
    leader = s["leader"]
    head = (f"[bold]{s['namespace']}[/]  ({s['strategy']} strategy"
            + (f", task {s['task']}" if s["task"] else "") + ")")
    if not s["exists"]:
        head += "  [yellow]no state in Redis[/]"
    console.print(head)
    ctl = s.get("control") or {"state": "running", "stop_running": False}
    if ctl["state"] != "running":
        style = "yellow" if ctl["state"] == "paused" else "red"
        console.print(f"  state: [{style}]{ctl['state']}[/]"
                      + (" (running partitions stop at their next block)" if ctl["stop_running"]
                         else " (running partitions finish)")
                      + ("; `elk resume` goes on" if ctl["state"] == "paused"
                         else "; stays until `elk reset`"))
    else:
        console.print("  state: running")
    console.print("  leader: " + (f"{leader['node_id']} (epoch {leader['epoch']})" if leader
                                  else f"none (last epoch {s['epoch'] or 0})"))
    plan = s["plan"]
    console.print(f"  planned: IDs {plan['start_id'] if plan['start_id'] is not None else '-'}"
                  f"..{plan['cursor'] - 1 if plan['cursor'] is not None else '-'}"
                  + (f", compacted below {plan['watermark']}" if plan["watermark"] else ""))
    if s["planner_error"]:
        console.print(f"  [red]planner error:[/] {s['planner_error']}")
    counts = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("total", "pending", "claimed", "running", "completed", "failed", "items"):
        counts.add_column(col, justify="right")
    counts.add_row(*(f"{c[k]:,}" for k in ("total", "pending", "claimed", "running",
                                            "completed", "failed")),
                   f"{s['items_processed']:,}")
    console.print(Padding(counts, (0, 0, 0, 2), expand=False))
    if c.get("quarantined"):
        ids = ", ".join(str(q["partition_id"]) for q in s["quarantined"])
        more = ", ..." if c["quarantined"] > len(s["quarantined"]) else ""
        console.print(f"  [red]quarantined:[/] {c['quarantined']} partition(s) ({ids}{more}): their "
                      "stored values are not elk partitions and the job goes on without them; "
                      "inspect them, then delete them (strategy.delete_partitions) to have "
                      "their ranges planned again")
    t = s["throughput"]
    console.print(f"  progress: {s['progress'] * 100:.1f}%  throughput: "
                  f"{_fmt_rate(t['partitions_per_s'], 'partitions')}, "
                  f"{_fmt_rate(t['items_per_s'], 'items')}  ETA: "
                  f"{_eta_text(s)}"
                  + ("" if t["sample_s"] else "  (use --sample SECONDS for rates)"))
    b = s["breaker"]
    style = {"closed": "green", "open": "red", "half_open": "yellow"}.get(b["state"], "white")
    line = f"  breaker: [{style}]{b['state']}[/]"
    if not b.get("enabled", True):
        line += " (disabled)"
    line += (f", {b['consecutive_failures']} consecutive / {b['failures_in_window']} in window"
             f" failures, {b['trips']} trips, {b['refused']} claims refused")
    if b["state"] == "open" and b["reopens_in"] is not None:
        line += f", probes in {b['reopens_in']:.1f}s"
    if b["reason"]:
        line += f" ({b['reason']})"
    console.print(line)
    if s.get("settings"):
        console.print("  settings: " + ", ".join(
            f"{k}={'none' if v['value'] is None else v['value']} ({v['source']})"
            for k, v in s["settings"].items()))
    nodes = Table(header_style="bold", box=None, pad_edge=False)
    for col in ("node", "alive", "heartbeat expires", "held", "completed", "rate",
                "in-flight partitions"):
        nodes.add_column(col)
    per_host = {h["node"]: h for h in s["per_node"]}
    shown: set[str] = set()
    for n in s["nodes"]:
        alive = {True: "[green]yes[/]", False: "[red]no[/]", None: "?"}[n["alive"]]
        parts = ", ".join(f"{p['partition_id']}[{p['min_id']}..{p['max_id']}] {p['status']}"
                          for p in n["partitions"]) or "-"
        exp = "-" if n["expires_in"] is None else f"{n['expires_in']:+.1f}s"
        # a host's counts span its restarts: on its first (live) row only
        host = per_host.get(n["hostname"]) if n["hostname"] not in shown else None
        shown.add(n["hostname"])
        done = f"{host['completed']:,}" if host else "-"
        rate = (f"{host['partitions_per_s']:,.1f}/s, {host['items_per_s']:,.0f} items/s"
                if host and host["partitions_per_s"] is not None else "-")
        nodes.add_row(n["node_id"], alive, exp, str(n["held"]), done, rate, parts)
    if s["nodes"]:
        console.print(f"  nodes ({s['live_nodes']} live):")
        console.print(Padding(nodes, (0, 0, 0, 2), expand=False))
    else:
        console.print("  nodes: none registered")
    console.print()


@elk.command()
@namespace_option()
@json_option
@click.option("--sample", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Measure throughput and ETA over this many seconds (0: skip).")
@click.pass_context
def status(ctx: click.Context, namespaces: tuple[str, ...], as_json: bool, sample: float) -> None:
    """Leader, nodes and their partitions, counts, breaker, throughput, ETA."""
    st = state_of(ctx)
    targets = st.targets(namespaces)
    samples = _data.sample_all(targets, sample)
    out = [_data.status(t, first, second) for t, (first, second) in zip(targets, samples)]
    if as_json:
        emit_json({"redis_url": redact(st.url), "namespaces": out})
        return
    console = _console(ctx)
    console.print(f"[dim]Redis {redact(st.url)}[/]")
    for note in st.notes:
        console.print(f"[dim]{note}[/]")
    for s in out:
        _render_status(console, s)


# ---------------------------------------------------------------- partitions

@elk.command()
@namespace_option()
@click.option("-s", "--status", "statuses", multiple=True,
              type=click.Choice([s.value for s in Status]),
              help="Only partitions with this status (repeatable).")
@click.option("--node", metavar="NODE_ID", help="Only partitions held by this node.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many per namespace.")
@json_option
@click.pass_context
def partitions(ctx: click.Context, namespaces: tuple[str, ...], statuses: tuple[str, ...],
               node: str | None, limit: int, as_json: bool) -> None:
    """List partitions, filtered by status and node, lowest id first.

    Pending, claimed, running and failed ones are found through their
    indexes; listing completed ones (or all) reads every partition.
    """
    st = state_of(ctx)
    result: list[dict[str, Any]] = []
    for t in st.targets(namespaces):
        parts = t.store.strategy.get_filtered_partitions(
            status=list(statuses) or None, node_id=node, limit=limit)
        result.append({"namespace": t.namespace,
                       "partitions": [_data.partition_dict(p) for p in parts]})
    if as_json:
        emit_json({"namespaces": result})
        return
    console = _console(ctx)
    for r in result:
        console.print(f"[bold]{r['namespace']}[/]: {len(r['partitions'])} partition(s)")
        table = Table(header_style="bold")
        for col in ("id", "range", "status", "node", "attempts", "fence", "items", "done",
                    "split", "updated", "error"):
            table.add_column(col, overflow="fold")
        for p in r["partitions"]:
            table.add_row(str(p["partition_id"]), f"{p['min_id']}..{p['max_id']}", p["status"],
                          p["node_id"] or "-", str(p["attempts"]), str(p["fence"]),
                          _items_cell(p), _done_cell(p), _split_cell(p),
                          (p["updated_at"] or "-")[:19],
                          (p["error"] or "")[:120])
        console.print(table)


def _items_cell(p: dict[str, Any]) -> str:
    """Items of a completed partition; a running one's reported so far."""
    if p["status"] != "completed" and p["progress_items"] is not None:
        return f"{p['progress_items']:,} so far"
    return f"{p['items_processed']:,}"


def _split_cell(p: dict[str, Any]) -> str:
    """``from <parent>`` for a tail split off a running partition; ``<n>x``
    for a partition whose tail was split off n times."""
    cells = []
    if p["parent_id"] is not None:
        cells.append(f"from {p['parent_id']}")
    if p["splits"]:
        cells.append(f"{p['splits']}x")
    return ", ".join(cells) or "-"


def _done_cell(p: dict[str, Any]) -> str:
    """Share of the range checkpointed, and up to which ID."""
    if p["status"] == "completed":
        return "100%"
    if p["checkpoint"] is None:
        return "-"
    return f"{p['done_fraction'] * 100:.0f}% (to {p['checkpoint']})"


# ---------------------------------------------------------------------- gaps

@elk.command()
@namespace_option()
@click.option("--full", is_flag=True,
              help="Rebuild from the start instead of checking what changed since the last check.")
@click.option("--fill", is_flag=True,
              help="Create partitions for the gaps that hold data (needs the job's planner: -A).")
@json_option
@click.pass_context
def gaps(ctx: click.Context, namespaces: tuple[str, ...], full: bool, fill: bool,
         as_json: bool) -> None:
    """ID ranges of the planned span that no partition covers, and failed ones."""
    st = state_of(ctx)
    result = []
    for t in st.targets(namespaces):
        if fill and t.planner is None:
            raise click.ClickException(f"{t.namespace}: --fill needs the job's planner: "
                                       + _no_job_hint(st, t.namespace))
        det = GapDetector(t.store, t.planner)
        report = det.detect("full" if full else "incremental")
        d = report.as_dict()
        if fill:
            created = det.fill(report)
            d["filled"] = [_data.partition_dict(p) for p in created]
            d["fill_conflicts"] = [g.as_dict() for g in det.conflicts]
        result.append(d)
    if as_json:
        emit_json({"namespaces": result})
        return
    console = _console(ctx)
    for d in result:
        wm = f", compacted below {d['watermark']}" if d["watermark"] else ""
        console.print(f"[bold]{d['namespace']}[/]: planned IDs {d['start_id']}..{d['end_id']}{wm}"
                      f" - {d['mode']} check read {d['scanned']:,} index entries in "
                      f"{d['elapsed_ms']:.1f} ms"
                      + (f" ({d['fallback_reason']})" if d["fallback_reason"] else ""))
        if d["planner_error"]:
            console.print(f"  [red]planner error:[/] {d['planner_error']}")
        if not d["gaps"]:
            console.print("  [green]no gaps[/]")
        else:
            console.print(f"  {len(d['gaps'])} gap(s), {d['missing_ids']:,} IDs:")
            table = Table(header_style="bold")
            for col in ("from", "to", "IDs", "holds data"):
                table.add_column(col, justify="right")
            for g in d["gaps"]:
                hd = {True: "[yellow]yes[/]", False: "no", None: "? (no planner)"}[g["has_data"]]
                table.add_row(str(g["min_id"]), str(g["max_id"]), f"{g['size']:,}", hd)
            console.print(table)
        if d["failed_total"]:
            console.print(f"  {d['failed_total']} partition(s) failed for good "
                          "(`elk retry-failed` re-queues them):")
            table = Table(header_style="bold")
            for col in ("id", "range", "attempts", "error"):
                table.add_column(col, overflow="fold")
            for f in d["failed"]:
                table.add_row(str(f["partition_id"]), f"{f['min_id']}..{f['max_id']}",
                              str(f["attempts"]), (f["error"] or "")[:120])
            console.print(table)
        if "filled" in d:
            console.print(f"  filled: created {len(d['filled'])} partition(s)"
                          + (f"; {len(d['fill_conflicts'])} gap(s) changed meanwhile, skipped"
                             if d["fill_conflicts"] else ""))


def _no_job_hint(st: CLIState, namespace: str) -> str:
    """Why the CLI has no job for ``namespace``, and what to do about it."""
    if st.app is None:
        return "load the app that defines the job (celery -A proj elk gaps --fill)"
    name = getattr(st.app, "main", None) or "the app"
    if st.elk is None:
        return f"the Celery app {name!r} has no Elk(app): call it in the app's module"
    known = ", ".join(sorted(st.jobs())) or "none"
    return (f"the Celery app {name!r} has no partitioned job with that namespace (its jobs: "
            f"{known}); the module that defines it must be imported by the app (its include=[...]"
            ", imports, or app.autodiscover_tasks()), or pass the job's --namespace")


# ------------------------------------------------------------- retry-failed

@elk.command("retry-failed")
@namespace_option()
@click.option("--id", "ids", type=int, multiple=True, metavar="PARTITION_ID",
              help="Only these partitions (repeatable). Default: every failed one.")
@json_option
@click.pass_context
def retry_failed(ctx: click.Context, namespaces: tuple[str, ...], ids: tuple[int, ...],
                 as_json: bool) -> None:
    """Put failed partitions back to pending, with fresh attempts."""
    st = state_of(ctx)
    result = []
    for t in st.targets(namespaces):
        done = t.store.strategy.retry_failed(list(ids) if ids else None)
        result.append({"namespace": t.namespace, "requeued": done})
    if as_json:
        emit_json({"namespaces": result})
        return
    for r in result:
        click.echo(f"{r['namespace']}: re-queued {len(r['requeued'])} failed partition(s)"
                   + (f": {', '.join(map(str, r['requeued'][:20]))}"
                      + (" ..." if len(r["requeued"]) > 20 else "") if r["requeued"] else ""))


# ------------------------------------------------------------------- breaker

@elk.group(invoke_without_command=True, cls=ElkGroup)
@namespace_option()
@json_option
@click.pass_context
def breaker(ctx: click.Context, namespaces: tuple[str, ...], as_json: bool) -> None:
    """Show the shared circuit breaker; `breaker reset` closes it."""
    if ctx.invoked_subcommand is not None:
        ctx.meta["elk.breaker.namespaces"] = namespaces
        return
    st = state_of(ctx)
    result: list[dict[str, Any]] = []
    for t in st.targets(namespaces):
        d: dict[str, Any] = CircuitBreaker(t.store).state().as_dict()
        d["enabled"] = bool(t.store.settings.circuit_breaker_enabled)
        result.append({"namespace": t.namespace, **d})
    if as_json:
        emit_json({"namespaces": result})
        return
    console = _console(ctx)
    table = Table(header_style="bold")
    for col in ("namespace", "state", "consecutive", "in window", "trips", "probes",
                "refused", "probes in", "reason"):
        table.add_column(col)
    for d in result:
        style = {"closed": "green", "open": "red", "half_open": "yellow"}.get(d["state"], "white")
        table.add_row(d["namespace"], f"[{style}]{d['state']}[/]" + ("" if d["enabled"] else " (off)"),
                      str(d["consecutive_failures"]), str(d["failures_in_window"]),
                      str(d["trips"]), str(d["probes"]), str(d["refused"]),
                      "-" if d["reopens_in"] is None else f"{d['reopens_in']:.1f}s",
                      d["reason"] or "")
    console.print(table)


@breaker.command("reset")
@namespace_option()
@click.pass_context
def breaker_reset(ctx: click.Context, namespaces: tuple[str, ...]) -> None:
    """Close the breaker and forget recent failures."""
    st = state_of(ctx)
    given = namespaces or ctx.meta.get("elk.breaker.namespaces", ())
    for t in st.targets(given):
        before = CircuitBreaker(t.store).state().state
        CircuitBreaker(t.store).reset()
        click.echo(f"{t.namespace}: breaker reset ({before} -> closed)")


# --------------------------------------------------------------------- watch

class _FailAwareBar(BarColumn):
    """A bar that turns red once a partition of its namespace failed for good."""

    def render(self, task: Any) -> Any:
        failed = bool(task.fields.get("failed"))
        self.complete_style = "red" if failed else "bar.complete"
        self.finished_style = "red" if failed else "bar.finished"
        return super().render(task)


def _watch_line(ns: str, c: dict[str, Any], rate: float | None,
                live: dict[str, Any] | None = None) -> str:
    """One plain progress line (``elk watch`` without a terminal)."""
    total, done = c["total"], c["completed"]
    if not total:
        return f"{ns}: waiting for a plan"
    live = live or {}
    return (f"{ns}: {done:,}/{total:,} completed ({done / total * 100:.1f}%), "
            f"{c['failed']:,} failed, {c['claimed'] + c['running']:,} running"
            + (f" ({live['running_done'] * 100:.0f}% through)" if live.get("running_done") else "")
            + f", {c['pending']:,} pending" + (f", {rate:,.1f}/s" if rate else "")
            + (f", ETA {live['eta']}" if live.get("eta") else "")
            + (f", {live['state'].upper()}" if live.get("state", "running") != "running" else ""))


@elk.command()
@namespace_option()
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              metavar="SECONDS", help="Refresh period.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help=f"Give up after this long (exit code {EXIT_TIMEOUT}).")
@click.option("--plain", is_flag=True,
              help="Print plain lines instead of a live bar (the default when stdout is not a "
                   "terminal).")
@click.option("--every", type=click.FloatRange(min=0.05), default=10.0, show_default=True,
              metavar="SECONDS", help="Plain lines: print one per namespace this often.")
@click.pass_context
def watch(ctx: click.Context, namespaces: tuple[str, ...], interval: float,
          timeout: float | None, plain: bool, every: float) -> None:
    """A live progress bar per namespace until every planned partition is done.

    The bar counts completed partitions; failed ones turn it red and are
    counted beside it. Without a terminal (or with --plain) it prints a
    plain line per namespace every --every seconds instead. Exit code 0 when
    all completed, 1 when some ended failed, 3 on --timeout, 130 on Ctrl-C.
    A namespace with nothing planned yet is waited for.
    """
    st = state_of(ctx)
    targets = st.targets(namespaces)
    plain = plain or not sys.stdout.isatty()
    console = _console(ctx)
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = Progress(
        TextColumn("[bold]{task.description}"), _FailAwareBar(), TaskProgressColumn(),
        TextColumn("{task.fields[count]}"), TextColumn("{task.fields[detail]}"),
        console=console, transient=False, refresh_per_second=4, disable=plain)
    tasks = {t.namespace: progress.add_task(t.namespace, total=None, count="", failed=0,
                                            detail="waiting for a plan") for t in targets}
    last: dict[str, dict[str, Any]] = {}
    rates: dict[str, float | None] = {}
    lives: dict[str, dict[str, Any]] = {}
    next_line = 0.0
    code = 0
    try:
        with progress:
            while True:
                all_done = True
                for t in targets:
                    c = _data.counts(t)
                    prev = last.get(t.namespace)
                    rate = _data.throughput(prev, c)["partitions_per_s"] if prev else None
                    rates[t.namespace] = rate
                    last[t.namespace] = c
                    inflight = c["claimed"] + c["running"]
                    failed = (f"[red]{c['failed']:,} failed[/]" if c["failed"]
                              else "0 failed")
                    lv = lives[t.namespace] = _data.live(t, c)
                    through = (f" ({lv['running_done'] * 100:.0f}% through)"
                               if lv["running_done"] else "")
                    detail = (f"{failed}, {inflight} running{through}, {c['pending']} pending"
                              + (f", {rate:,.1f}/s" if rate else "")
                              + (f", ETA {lv['eta']}" if lv["eta"] else "")
                              + (f", [yellow]{lv['state'].upper()}[/]"
                                 if lv["state"] != "running" else ""))
                    progress.update(tasks[t.namespace], total=c["total"] or None,
                                    completed=c["completed"], failed=c["failed"],
                                    count=f"{c['completed']:,}/{c['total']:,}",
                                    detail=detail if c["total"] else "waiting for a plan")
                    if not (c["total"] > 0 and c["remaining"] == 0):
                        all_done = False
                if plain and (all_done or time.monotonic() >= next_line):
                    next_line = time.monotonic() + every
                    stamp = time.strftime("%H:%M:%S")
                    for ns, c in last.items():
                        click.echo(f"{stamp} {_watch_line(ns, c, rates.get(ns), lives.get(ns))}")
                if all_done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    code = EXIT_TIMEOUT
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    failed_total = sum(c["failed"] for c in last.values())
    for ns, c in last.items():
        click.echo(f"{ns}: {c['completed']:,}/{c['total']:,} completed, {c['failed']:,} failed, "
                   f"{c['remaining']:,} remaining")
    if code == EXIT_TIMEOUT:
        click.echo(f"timed out after {timeout}s with work remaining", err=True)
    elif code == EXIT_INTERRUPTED:
        click.echo("interrupted", err=True)
    elif failed_total:
        code = EXIT_FAILED
        click.echo(f"done, but {failed_total} partition(s) failed: see `elk partitions --status "
                   "failed`, then `elk retry-failed`", err=True)
    ctx.exit(code)


# --------------------------------------------------------------------- reset

@elk.command()
@namespace_option(required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, namespaces: tuple[str, ...], yes: bool) -> None:
    """Delete every key of a namespace: partitions, progress, nodes, leader, breaker."""
    st = state_of(ctx)
    targets = st.targets(namespaces)
    if not yes:
        names = ", ".join(t.namespace for t in targets)
        click.confirm(f"Delete ALL elk state of namespace(s) {names} in Redis {redact(st.url)}? "
                      "Progress is lost and the job starts over", abort=True)
    for t in targets:
        n = t.store.reset()
        click.echo(f"{t.namespace}: reset ({n} key(s) deleted)")


# ------------------------------------------------------------------- compact

@elk.command()
@namespace_option()
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True,
              help="Partitions removed per Redis call.")
@json_option
@click.pass_context
def compact(ctx: click.Context, namespaces: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Forget the completed prefix of each job (counts stay; memory shrinks)."""
    from ..compaction import compact_all
    st = state_of(ctx)
    result: list[dict[str, Any]] = []
    for t in st.targets(namespaces):
        done = compact_all(t.store, limit)
        result.append({"namespace": t.namespace, "compacted": done.compacted,
                       "watermark": done.watermark})
    if as_json:
        emit_json({"namespaces": result})
        return
    for r in result:
        click.echo(f"{r['namespace']}: compacted {r['compacted']:,} partition(s); "
                   f"watermark {r['watermark'] if r['watermark'] is not None else 'none'}")
