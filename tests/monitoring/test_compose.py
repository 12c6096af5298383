"""docker-compose.yml, checked as a file (no Docker engine runs here)."""

from __future__ import annotations

import re

import pytest

from tests.monitoring.conftest import MONITORING, ROOT

SERVICES = {"redis", "worker", "beat", "flower", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose(yaml) -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def test_the_stack_has_every_service(compose):
    assert SERVICES <= set(services(compose))


def test_published_ports(compose):
    ports = {name: s.get("ports", []) for name, s in services(compose).items()}
    # published on the host's loopback only (security by default)
    assert "127.0.0.1:5555:5555" in ports["flower"]
    assert "127.0.0.1:9090:9090" in ports["prometheus"]
    assert "127.0.0.1:3000:3000" in ports["grafana"]
    published = [p.rsplit(":", 1)[0] for ps in ports.values() for p in ps if ":" in p]
    assert all(p.startswith("127.0.0.1:") for p in published), published
    assert len(published) == len(set(published)), "two services publish the same host port"


def test_bind_mounts_exist_in_the_repo(compose):
    binds = []
    for name, s in services(compose).items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith((".", "/")):
                binds.append((name, src))
            else:
                assert src in compose["volumes"], f"{name}: named volume {src} is not declared"
    assert binds, "prometheus and grafana mount their configuration"
    for name, src in binds:
        assert (ROOT / src).exists(), f"{name} mounts {src}, which is not in the repo"
    mounted = {src for _, src in binds}
    assert {"./monitoring/prometheus", "./monitoring/grafana/provisioning",
            "./monitoring/grafana/dashboards"} <= mounted


def test_build_uses_a_dockerfile_in_the_repo(compose):
    for name in ("worker", "beat", "flower"):
        build = services(compose)[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    dockerfile = (MONITORING / "Dockerfile").read_text()
    copied = [w for line in dockerfile.splitlines() if line.startswith("COPY ")
              for w in line.split()[1:-1]]
    assert {"elk_celery", "example_project", "pyproject.toml"} <= set(copied)
    for path in copied:
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which is not in the repo"
    # `pip install .` needs every file pyproject.toml names (readme, license)
    text = (ROOT / "pyproject.toml").read_text()
    named = re.findall(r'^(?:readme|license-files?)\s*=\s*"([^"]+)"', text, re.M)
    for files in re.findall(r'^license-files\s*=\s*\[([^\]]*)\]', text, re.M):
        named += re.findall(r'"([^"]+)"', files)
    assert "LICENSE" in named and "docs/pypi.md" in named
    for path in named:
        assert path in copied, f"pyproject.toml needs {path}; the Dockerfile does not copy it"


def _module_of(command: list[str]) -> str:
    if command[:2] == ["python", "-m"]:
        return command[2]
    assert command[0] == "celery" and command[1] == "-A", command
    return command[2].split(":")[0]


def test_commands_name_modules_that_exist(compose):
    for name, s in services(compose).items():
        cmd = s.get("command")
        if not cmd or name in ("redis", "prometheus", "grafana"):
            continue
        module = _module_of(cmd)
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name} runs {module}, which is not in the repo"


def test_workers_are_configured_for_prefork_metrics_and_flower(compose, yaml):
    worker = services(compose)["worker"]
    cmd = worker["command"]
    assert cmd[3] == "worker" and "-E" in cmd and "--pool=prefork" in cmd
    env = worker["environment"]
    assert env["PROMETHEUS_MULTIPROC_DIR"] in worker["tmpfs"]
    port = int(env["ELK_METRICS_PORT"])
    prom = yaml.safe_load((MONITORING / "prometheus/prometheus.yml").read_text())
    workers = next(j for j in prom["scrape_configs"] if j["job_name"] == "elk-workers")
    assert workers["dns_sd_configs"][0]["port"] == port
    flower = services(compose)["flower"]
    assert "PROMETHEUS_MULTIPROC_DIR" not in flower["environment"]
    assert "--port=5555" in flower["command"] and "--address=0.0.0.0" in flower["command"]
    assert services(compose)["beat"]["command"][3] == "beat"


def test_grafana_and_prometheus_mount_the_right_places(compose):
    prom = services(compose)["prometheus"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    graf = services(compose)["grafana"]
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in graf["volumes"]
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in graf["volumes"]


def test_compose_workers_environment_turns_metrics_on(compose, tmp_path):
    """The worker's environment in the compose file, given to the example app,
    yields the metrics settings Prometheus scrapes."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **services(compose)["worker"]["environment"],
           "ELK_REDIS_URL": "redis://127.0.0.1:6379/0",
           "EXAMPLE_DB_URL": f"sqlite:///{tmp_path / 'records.db'}", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    code = ("import json; from example_project.app import app; from elk_celery.app import get_elk;"
            "s = get_elk(app).settings; print(json.dumps([s.metrics_port, s.metrics_address]))")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [9808, "0.0.0.0"]
