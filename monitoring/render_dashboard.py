"""Render the elk_celery Grafana dashboard's data as one static HTML page.

For a quick look without Grafana: it reads
``monitoring/grafana/dashboards/elk_celery.json``, evaluates every panel query
against a Prometheus server and writes a self-contained HTML file (no
JavaScript, no external assets) laid out on the dashboard's grid, row by row:

* stat and table panels show the current values (value mappings applied,
  e.g. breaker ``0`` as "closed");
* time series show an inline SVG sparkline per series over ``--range``, with
  the current value in the legend;
* the heatmap shows the current count per histogram bucket as bars.

Usage (standard library only)::

    python monitoring/render_dashboard.py --prometheus http://127.0.0.1:9090 --out dash.html

Grafana variables are replaced: ``$namespace`` by ``--namespace`` (a regex,
default every namespace) and ``$__rate_interval`` by ``--rate-interval``
(default 1m; with a fast scrape interval a shorter one shows more detail).
``docs/make_screenshots.py`` uses it for ``docs/img/dashboard.png``.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parent / "grafana" / "dashboards" / "elk_celery.json"
UNIT_PX = 20  # height of one Grafana grid unit on the page
COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a"]
MAX_SERIES = 8  # series drawn per panel (the rest are counted in the legend)


# ------------------------------------------------------------------ Prometheus

class Prometheus:
    """The two HTTP API calls the page needs."""

    def __init__(self, base: str, timeout: float = 10) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, **params: Any) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=self.timeout) as r:
            reply = json.load(r)
        if reply.get("status") != "success":
            raise RuntimeError(f"{reply.get('error', reply)} for {params.get('query')}")
        return reply["data"]["result"]

    def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", query=expr, time=at)

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)


def seconds(duration: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h`` -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", duration.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {duration!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


# ------------------------------------------------------------------ formatting

def fmt(value: float, unit: str) -> str:
    """A value as Grafana would roughly show it for the panel's unit."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        a = abs(value)
        if a == 0:
            return "0 s"
        if a < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if a < 1:
            return f"{value * 1e3:.1f} ms"
        if a < 120:
            return f"{value:.1f} s"
        if a < 7200:
            return f"{value / 60:.1f} min"
        return f"{value / 3600:.1f} h"
    suffix = "/s" if unit == "ops" else ""
    a = abs(value)
    for div, sym in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{value / div:.2f}{sym}{suffix}"
    if value == int(value):
        return f"{int(value)}{suffix}"
    return f"{value:.3g}{suffix}"


def bucket(le: float) -> str:
    """A histogram bound in seconds, short: 50ms, 2.5s, +Inf."""
    if math.isinf(le):
        return "+Inf"
    return f"{le * 1000:g}ms" if le < 1 else f"{le:g}s"


def legend(fmt_str: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format; without one, the label set."""
    if fmt_str:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt_str).strip()
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


def mapped(value: float, mappings: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(text, colour) of a Grafana value mapping matching ``value``."""
    for m in mappings:
        if m.get("type") == "value":
            key = str(int(value)) if value == int(value) else str(value)
            hit = m["options"].get(key)
            if hit:
                return hit.get("text", key), hit.get("color", "")
    return None


def color_of(value: float, field: dict[str, Any]) -> str:
    """The colour of ``value`` under the panel's absolute thresholds (if any)."""
    steps = (field.get("thresholds") or {}).get("steps") or []
    colour = ""
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            colour = step["color"]
    return {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830"}.get(colour, colour)


# ------------------------------------------------------------------ rendering

def sparkline(series: list[list[tuple[float, float]]], start: float, end: float,
              width: int = 400, height: int = 70) -> str:
    """One SVG with a polyline per series, sharing a y axis from 0 (or the minimum)."""
    values = [v for s in series for _, v in s if math.isfinite(v)]
    if not values:
        return '<div class="nodata">no data in range</div>'
    lo, hi = min(0.0, min(values)), max(values)
    if hi == lo:
        hi = lo + 1
    span = max(end - start, 1e-9)
    lines = []
    for i, s in enumerate(series):
        pts = " ".join(f"{(t - start) / span * width:.1f},{height - 2 - (v - lo) / (hi - lo) * (height - 4):.1f}"
                       for t, v in s if math.isfinite(v))
        if pts:
            lines.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[i % len(COLORS)]}" '
                         f'stroke-width="1.6" vector-effect="non-scaling-stroke"/>')
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" preserveAspectRatio="none">'
            f'<line x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" stroke="#444"/>'
            + "".join(lines) + "</svg>")


def render_panel(p: dict[str, Any], prom: Prometheus, subst: dict[str, str], now: float,
                 start: float, step: float) -> str:
    kind, field = p["type"], p.get("fieldConfig", {}).get("defaults", {})
    unit = field.get("unit", "short")
    body: list[str] = []
    try:
        evaluated = []
        for t in p.get("targets", []):
            expr = t["expr"]
            for k, v in subst.items():
                expr = expr.replace(k, v)
            evaluated.append((t, expr, prom.instant(expr, now)))
        if kind == "stat":
            for t, _, result in evaluated:
                for r in result:
                    v = float(r["value"][1])
                    text, colour = mapped(v, field.get("mappings", [])) or (fmt(v, unit), color_of(v, field))
                    name = legend(t.get("legendFormat", ""), r["metric"]) if len(evaluated) > 1 or t.get("legendFormat") else ""
                    body.append(f'<div class="stat"><span class="big" style="color:{colour or "#e0e0e0"}">'
                                f'{html.escape(text)}</span>'
                                + (f'<span class="sub">{html.escape(name)}</span>' if name else "") + "</div>")
        elif kind == "table":
            rows = [r for _, _, result in evaluated for r in result]
            cols = sorted({k for r in rows for k in r["metric"] if k != "__name__"})
            if rows:
                body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
                            + "<th>value</th></tr>" + "".join(
                                "<tr>" + "".join(f"<td>{html.escape(r['metric'].get(c, ''))}</td>" for c in cols)
                                + f"<td>{html.escape(fmt(float(r['value'][1]), unit))}</td></tr>" for r in rows)
                            + "</table>")
        elif kind == "heatmap":
            counts = {}
            for _, _, result in evaluated:
                for r in result:
                    counts[float(r["metric"].get("le", "inf"))] = float(r["value"][1])
            bounds = sorted(counts)
            per = [(b, counts[b] - (counts[bounds[i - 1]] if i else 0)) for i, b in enumerate(bounds)]
            top = max((c for _, c in per), default=0) or 1
            if any(c > 0 for _, c in per):
                body.append('<div class="bars">' + "".join(
                    f'<div class="bar" title="le {b:g}: {c:g}"><div style="height:{c / top * 100:.0f}%"></div>'
                    f'<span>{bucket(b)}</span></div>'
                    for b, c in per) + "</div>")
        else:  # timeseries
            series, names = [], []
            for t, expr, result in evaluated:
                ranged = {json.dumps(r["metric"], sort_keys=True): r["values"]
                          for r in prom.range(expr, start, now, step)}
                for r in result:
                    vals = ranged.get(json.dumps(r["metric"], sort_keys=True), [])
                    series.append([(float(ts), float(v)) for ts, v in vals])
                    names.append((legend(t.get("legendFormat", ""), r["metric"]), float(r["value"][1])))
            if series:
                body.append(sparkline(series[:MAX_SERIES], start, now))
                items = [f'<span><i style="background:{COLORS[i % len(COLORS)]}"></i>{html.escape(n)} '
                         f'<b>{html.escape(fmt(v, unit))}</b></span>'
                         for i, (n, v) in enumerate(names[:MAX_SERIES])]
                if len(names) > MAX_SERIES:
                    items.append(f"<span>+{len(names) - MAX_SERIES} more</span>")
                body.append('<div class="legend">' + "".join(items) + "</div>")
    except (OSError, RuntimeError, ValueError) as exc:
        body = [f'<div class="err">{html.escape(str(exc))}</div>']
    if not body:
        body = ['<div class="nodata">No data</div>']
    g = p["gridPos"]
    return (f'<section class="panel {kind}" style="grid-column:{g["x"] + 1}/span {g["w"]};'
            f'grid-row:{g["y"] + 1}/span {g["h"]}" title="{html.escape(p.get("description", ""))}">'
            f'<h3>{html.escape(p["title"])}</h3><div class="body">{"".join(body)}</div></section>')


CSS = """
body{margin:0;background:#111217;color:#ccccdc;font:13px/1.3 -apple-system,"Segoe UI",Roboto,
Helvetica,Arial,sans-serif}
header{padding:10px 14px;display:flex;gap:18px;align-items:baseline;border-bottom:1px solid #2a2c33}
header h1{font-size:18px;margin:0;color:#fff}header span{color:#8e8e9e}
.grid{display:grid;grid-template-columns:repeat(24,1fr);grid-auto-rows:%(unit)dpx;gap:6px;padding:8px}
.row{grid-column:1/-1;font-weight:600;font-size:15px;color:#fff;align-self:end;
border-bottom:1px solid #2a2c33;padding-bottom:2px}
.panel{background:#181b1f;border:1px solid #2a2c33;border-radius:3px;padding:5px 8px;
overflow:hidden;display:flex;flex-direction:column;min-width:0}
.panel h3{margin:0 0 3px;font-size:12.5px;font-weight:500;color:#ccccdc;white-space:nowrap;
overflow:hidden;text-overflow:ellipsis}
.body{flex:1;min-height:0;display:flex;flex-direction:column}
.stat-body,.panel.stat .body{flex-direction:row;flex-wrap:wrap;gap:2px 16px;align-items:center;
justify-content:center}
.stat{display:flex;flex-direction:column;align-items:center}
.big{font-size:28px;font-weight:500;color:#73bf69}.sub{font-size:11px;color:#8e8e9e}
.spark{width:100%%;flex:1;min-height:20px}
.legend{display:flex;flex-wrap:wrap;gap:0 12px;font-size:11px;color:#aaa;padding-top:2px}
.legend i{display:inline-block;width:10px;height:3px;margin:0 4px 3px 0;vertical-align:middle}
.legend b{color:#e0e0e0;font-weight:500}
table{border-collapse:collapse;font-size:12px;width:100%%}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #2a2c33}th{color:#8e8e9e;font-weight:500}
.bars{flex:1;display:flex;gap:2px;align-items:stretch}
.bar{flex:1;display:flex;flex-direction:column;justify-content:flex-end;min-width:0}
.bar div{background:#5794f2}.bar span{font-size:9px;color:#8e8e9e;text-align:center;overflow:hidden}
.nodata{color:#6e6e7e;margin:auto}.err{color:#f2495c;font-size:11px}
""" % {"unit": UNIT_PX}


def render(prometheus: str, dashboard: Path = DASHBOARD, namespace: str = ".*",
           rate_interval: str = "1m", range_: str = "1h", at: float | None = None) -> str:
    """The page, as a string; ``at`` is the evaluation time (default now)."""
    board = json.loads(Path(dashboard).read_text())
    prom = Prometheus(prometheus)
    now = time.time() if at is None else at
    span = seconds(range_)
    start, step = now - span, max(span / 150, 1.0)
    subst = {"$__rate_interval": rate_interval, "${namespace}": namespace, "$namespace": namespace}
    parts = []
    for p in board["panels"]:
        if p["type"] == "row":
            g = p["gridPos"]
            parts.append(f'<div class="row" style="grid-row:{g["y"] + 1}">{html.escape(p["title"])}</div>')
        else:
            parts.append(render_panel(p, prom, subst, now, start, step))
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(board["title"])}'
            f"</title><style>{CSS}</style></head><body><header><h1>{html.escape(board['title'])}</h1>"
            f"<span>namespace =~ {html.escape(namespace)}</span><span>sparklines: last "
            f"{html.escape(range_)}</span><span>rate window {html.escape(rate_interval)}</span>"
            f"<span>{when}, {html.escape(prometheus)}</span></header>"
            f'<main class="grid">{"".join(parts)}</main></body></html>\n')


def page_height(dashboard: Path = DASHBOARD) -> int:
    """Pixels the page needs (for a screenshot of all of it)."""
    board = json.loads(Path(dashboard).read_text())
    units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    return 50 + units * (UNIT_PX + 6) + 16


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    ap.add_argument("--out", default="dash.html", help="HTML file to write")
    ap.add_argument("--dashboard", type=Path, default=DASHBOARD, help="Grafana dashboard JSON")
    ap.add_argument("--namespace", default=".*", help="regex for $namespace (default: all)")
    ap.add_argument("--rate-interval", default="1m", help="value of $__rate_interval")
    ap.add_argument("--range", dest="range_", default="1h", metavar="DURATION",
                    help="sparkline time span (90s, 15m, 1h)")
    args = ap.parse_args(argv)
    try:
        seconds(args.range_)
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    try:  # one cheap call first, so a wrong URL is one clear error, not one per panel
        Prometheus(args.prometheus).instant("vector(1)", time.time())
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"cannot query Prometheus at {args.prometheus}: {exc}", file=sys.stderr)
        return 1
    page = render(args.prometheus, args.dashboard, args.namespace, args.rate_interval, args.range_)
    Path(args.out).write_text(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
