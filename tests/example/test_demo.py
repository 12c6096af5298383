"""The example project, end to end: the demo as a real subprocess (its own
Redis, celery workers and beat, a SQLite table), the same app on PostgreSQL,
and the processor's own fencing of its writes.

The example app is only ever imported in subprocesses: ``@partitioned_task``
jobs are process-global (like ``shared_task``), so importing it here would
add its job to the apps of other tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("EXAMPLE_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAMPLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_demo(args: list[str], env: dict[str, str], timeout: float = 180) -> tuple[int, str, dict[str, str]]:
    proc = subprocess.run([sys.executable, "-m", "example_project.demo", *args], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    m = re.search(r"^DEMO RESULT (.*)$", proc.stdout, re.M)
    result = dict(kv.split("=", 1) for kv in m.group(1).split()) if m else {}
    return proc.returncode, out, result


def check_all_processed(rc: int, out: str, result: dict[str, str], rows: int) -> None:
    assert result, f"the demo printed no DEMO RESULT line:\n{out[-4000:]}"
    assert rc == 0, f"demo exited {rc}:\n{out[-4000:]}"
    assert result["status"] == "done"
    assert int(result["rows"]) == rows
    assert int(result["missed"]) == 0
    # nobody crashed: no partition was run twice, so no row was written twice
    assert int(result["duplicates"]) == 0
    done, expected = result["partitions"].split("/")
    assert done == expected
    assert "every row was processed" in out


@pytest.mark.slow
def test_demo_processes_every_row():
    """The README's demo on the embedded default: without ELK_REDIS_URL it
    starts its own redis-server, two workers and beat, on a SQLite table."""
    env = _env()
    env.pop("ELK_REDIS_URL", None)
    rc, out, result = run_demo(["--rows", "30000", "--partition-size", "500", "--timeout", "90"], env)
    check_all_processed(rc, out, result, 30000)
    assert "started a private redis-server" in out
    assert float(result["partitions_per_s"]) > 0


def _postgres_or_skip() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            pytest.skip("no PostgreSQL driver installed (pip install 'psycopg[binary]')")
    import sqlalchemy as sa

    from example_project.db import normalize_db_url  # no Celery app: safe to import here
    try:
        engine = sa.create_engine(normalize_db_url(PG_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL} ({type(exc).__name__}); "
                    "set EXAMPLE_PG_URL to run this test")


@pytest.fixture
def pg_schema():
    """A schema of its own in the PostgreSQL database, dropped afterwards."""
    _postgres_or_skip()
    import sqlalchemy as sa

    from example_project.db import normalize_db_url
    schema = f"elk_example_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(normalize_db_url(PG_URL))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.mark.slow
def test_example_app_on_postgresql(pg_schema: str):
    """The same app on PostgreSQL, with the Redis of the test run."""
    rc, out, result = run_demo(["--db", pg_schema, "--rows", "20000", "--partition-size", "500",
                                "--workers", "1", "--concurrency", "2", "--timeout", "90"], _env())
    check_all_processed(rc, out, result, 20000)


def test_processor_fences_its_own_writes(tmp_path: Path):
    """A stale owner (lower fence) can't overwrite rows a later claim wrote;
    the later claim overwrites an earlier one's rows (and that counts twice)."""
    script = textwrap.dedent("""
        import json
        from example_project import seed
        from example_project.app import NAMESPACE, app, engine
        from elk_celery import get_elk
        import sqlalchemy as sa

        class Part:  # what a bound processor gets, reduced to what it uses
            def __init__(self, fence, node):
                self.fence, self.node_id = fence, node
            def check(self):
                pass

        seed.create_table(engine, 1000)
        fn = get_elk(app).job(NAMESPACE).spec.fn  # the undecorated processor
        out = {"new": fn(Part(2, "new"), 1, 500, {}),
               "stale": fn(Part(1, "old"), 1, 500, {}),
               "later": fn(Part(3, "later"), 401, 600, {})}
        with engine.connect() as c:
            out["rows"] = [list(r) for r in c.execute(sa.text(
                "SELECT processed, processed_by, fence, count(*) FROM records"
                " GROUP BY processed, processed_by, fence ORDER BY processed, fence"))]
        print(json.dumps(out))
    """)
    env = _env(EXAMPLE_DB_URL=f"sqlite:///{tmp_path / 'fence.db'}", EXAMPLE_BATCH_SIZE="64")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["new"] == 500
    assert out["stale"] == 0  # refused: every row already holds fence 2
    assert out["later"] == 200  # 401..500 (fence 2 < 3) and 501..600 (fence 0)
    assert out["rows"] == [
        [0, None, 0, 400],        # 601..1000: never processed
        [1, "new", 2, 400],       # 1..400
        [1, "later", 3, 100],     # 501..600
        [2, "later", 3, 100],     # 401..500: written by both claims
    ]
