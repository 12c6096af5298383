"""The benchmark scripts still run and print their figures (small sizes:
these check the scripts, not the speed; the figures are the scripts' own
business, see the README's Benchmarks section)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str, redis_url: str | None = None, timeout: float = 300) -> str:
    env = dict(os.environ)
    if redis_url:
        env["ELK_REDIS_URL"] = redis_url
    p = subprocess.run([sys.executable, str(BENCH / script), *args], env=env, cwd=BENCH.parent,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_bench_strategies_compares_both_claims(redis_url):
    out = _run("bench_strategies.py", "--claims", "300", "--lifecycles", "1000",
               "--seq-lifecycles", "300", "--repeat", "1", "--create-batch", "500",
               "--redis-url", redis_url)
    for kind in ("hash", "simple"):
        cpu = re.search(rf"{kind}\s+client CPU per claim: claim\(\) / worker_claim\(\) \(µs\)\s+"
                        r"(\d+) /\s+(\d+)", out)
        assert cpu, out
        assert int(cpu.group(1)) > 0 and int(cpu.group(2)) > 0
        assert re.search(rf"{kind}\s+worker_claim\(\) p50 / p99", out), out


def test_bench_e2e_prints_both_rates_and_a_verdict():
    out = _run("bench_e2e.py", "--n", "200", "--rounds", "1", "--no-acks-late")
    assert re.search(r"round 1: plain\s+200 in", out), out
    assert re.search(r"round 1: elk\s+200 in", out), out
    assert re.search(r"first partition done \d+ ms after its creation, \d+ done in the first second",
                     out), out
    assert "claims" in out and "stale writes 0, failed 0" in out, out
    assert re.search(r"VERDICT: elk_celery on default settings \d+ partitions/s = [\d.]+x plain "
                     r"Celery", out), out


def test_bench_capacity_and_planning_print_their_figures():
    out = _run("bench_capacity.py", "--ms", "50", "--seconds", "1", "--beat-head-start", "1")
    assert re.search(r"default\s+50 ms: elk\s+\d+ partitions,\s+[\d.]+/s, efficiency [\d.]+ \| "
                     r"plain Celery\s+[\d.]+/s, efficiency [\d.]+ \| ideal 80/s", out), out
    assert re.search(r"first partition [\d.]+s after the workers were ready", out), out
    assert re.search(r"VERDICT: (PASS|BELOW TARGET) on default settings", out), out
    out = _run("bench_planning.py", "--partitions", "2000", "--repeat", "1")
    assert re.search(r"hash\s+leader \(tick_job.*\):\s+[\d.]+ s =\s+[\d,]+ partitions/s", out), out
    assert re.search(r"baseline: bare Redis", out), out


def test_bench_gaps_and_metrics_run(redis_url):
    out = _run("bench_gaps.py", "--partitions", "20000", "--compact", "2000", "--repeat", "1",
               "--redis-url", redis_url)
    assert re.search(r"full detection \(new leader\)\s+[\d.]+ ms\s+read 20,000 entries", out), out
    assert re.search(r"compaction of 2,000 completed\s+\d+ ms", out), out
    out = _run("bench_metrics.py", "--iterations", "200", "--partitions", "100",
               "--processes", "2", "--reads", "5")
    assert re.search(r"hooks per partition, multiprocess\s+[\d.]+ us", out), out
    assert re.search(r"GET /metrics, 3 processes merged\s+p50 [\d.]+ ms", out), out


def test_bench_chaos_prints_the_fault_log_and_a_verdict():
    out = _run("bench_chaos.py", "--minutes", "0.5", "--max-id", "12000", "--size", "1000",
               "--sleep", "1.5", "--gap", "2,4", "--seed", "7")
    assert "nemesis seed 7" in out and re.search(r"\d+\.\d+s .+(kill|pause|cut|stall|purge|redis)", out), out
    assert re.search(r"job: \d+ s from the first run to the check; the ideal without faults", out), out
    assert "VERDICT: PASS" in out and "max overlap of two runs of a partition" in out, out


def test_bench_nodes_memory_and_million_print_their_figures():
    out = _run("bench_nodes.py", "--nodes", "4,8", "--seconds", "2", "--warmup", "1",
               "--processes", "2", "--load", "100", "--profile")
    for n in (4, 8):
        assert re.search(rf"\s{n} nodes, [\d.]+ ms partitions:\s+\d+ partitions/s \| claim p50 [\d.]+ ms", out), out
    assert re.search(r"leader round p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms", out), out
    assert "double owners 0, completions accepted twice 0" in out, out
    assert out.count(": yes | stale writes 0") == 2, out
    assert re.search(r"partitions per Redis CPU-second at 8 nodes = [\d.]+ x at 4 nodes", out), out
    out = _run("bench_memory.py", "--partitions", "2000")
    for status in ("pending", "running", "completed", "compacted"):
        assert re.search(rf"{status}[ a-z()]*\s+[\d.]+ bytes/partition \(MEMORY USAGE\)\s+[\d.]+ "
                         r"\(used_memory growth\)", out), out
    assert re.search(r"every partition planned at once: [\d,]+ MiB", out), out
    assert re.search(r"VERDICT: (PASS|BELOW TARGET): \d+ / \d+ bytes per pending partition", out), out
    out = _run("bench_million.py", "--partitions", "2000", "--progress", "5")
    assert re.search(r"2,000 partitions in [\d.]+ s = [\d,]+ partitions/s over the whole run", out), out
    assert re.search(r"leader rounds: [\d,]+, p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms", out), out
    assert re.search(r"Redis used_memory .*: peak [\d.]+ MiB, at the end [\d.]+ MiB", out), out
    assert "items 20,000 (= 20,000 IDs), stale writes 0" in out and "PASS" in out, out


def test_bench_rebalance_prints_each_variant_and_loses_nothing():
    out = _run("bench_rebalance.py", "--scale", "0.2", "--only", "a:default",
               "--only", "a:no-split", "--only", "b:default", timeout=600)
    for variant in ("a:default", "a:no-split", "b:default"):
        row = re.search(rf"^{re.escape(variant)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+\S+\s+[\d.]+"
                        r"\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
        assert row, out
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0
        assert row.group(6) == "0" and row.group(7) == "0", out  # no ID twice, none missing
    assert "FAILED" not in out, out
    assert re.search(r"^a:no-split\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+0\s", out, re.M), out


def test_bench_script_overhead_prints_each_row(redis_url):
    out = _run("bench_script_overhead.py", "--calls", "200", "--redis-url", redis_url)
    for row in ("empty script", "_lib.lua only", "_lib.lua + _io_hash.lua", "claim (hash",
                "completion (hash"):
        assert re.search(rf"{re.escape(row)}.*\s[\d.]+ us", out), out
    assert re.search(r"fixed cost of a hash-strategy script call beyond an empty one: -?[\d.]+ us",
                     out), out
