"""Packaging metadata: SPDX license, project URLs, a PyPI page with absolute links."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
HOME = PROJECT["urls"]["Homepage"]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_license_is_an_spdx_expression_with_its_file():
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"] and (ROOT / "LICENSE").exists()
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639


def test_project_urls_are_absolute_and_share_one_home():
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith(HOME) and u.startswith("https://") for u in urls.values()), urls


def test_the_pypi_page_links_only_absolute_urls_that_exist_here():
    page = ROOT / PROJECT["readme"]
    text = page.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all(u.startswith("https://") for u in links), links
    assert "<img" not in text and "![" not in text  # no images: PyPI can't show relative ones
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)}
    for url in links:
        if url.startswith(HOME + "#"):
            assert url.split("#", 1)[1] in anchors | {"readme"}, url
        elif url.startswith(HOME + "/blob/main/"):
            assert (ROOT / url[len(HOME + "/blob/main/"):]).exists(), url


@pytest.mark.slow
def test_the_built_wheel_carries_the_metadata(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deprecated" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    (wheel,) = tmp_path.glob("elk_celery-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = next(z.read(n).decode() for n in names if n.endswith("/METADATA"))
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "License-Expression: MIT" in meta
    assert "License-File: LICENSE" in meta
    assert f"Project-URL: Homepage, {HOME}" in meta
    assert "Description-Content-Type: text/markdown" in meta
    assert meta.split("\n\n", 1)[1].startswith("# elk-celery")  # docs/pypi.md, not README.md
    assert "[pytest11]\nelk_celery = elk_celery.testing" in entry_points
    assert any(n.endswith("store/lua/claim.lua") for n in names)
    assert any(n.endswith("elk_celery/py.typed") for n in names)
