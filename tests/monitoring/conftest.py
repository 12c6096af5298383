"""Fixtures of the monitoring tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path | None = None,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="session")
def yaml():
    return pytest.importorskip("yaml", reason="PyYAML is needed to read the monitoring files")
