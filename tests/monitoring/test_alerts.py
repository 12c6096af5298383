"""Alert rules: promtool checks and unit tests, and only exported metric names."""

from __future__ import annotations


from tests.monitoring.conftest import MONITORING, run_promtool
from tests.monitoring.promql import unknown_names

PROM = MONITORING / "prometheus"
WANTED = {"ElkLeaderMissing", "ElkNoProgress", "ElkCircuitBreakerOpen", "ElkHighFailureRate",
          "ElkNodeHeartbeatsLost", "ElkStuckPartitions"}


def rules(yaml) -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alerts_cover_the_failure_modes(yaml):
    alerts = {r["alert"]: r for r in rules(yaml)}
    assert WANTED <= set(alerts)
    for name, r in alerts.items():
        assert r.get("for"), f"{name} needs a `for:` duration"
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name


def test_alert_expressions_name_only_exported_metrics(yaml):
    bad = {r["alert"]: sorted(unknown_names(r["expr"])) for r in rules(yaml) if unknown_names(r["expr"])}
    assert bad == {}


def test_every_alert_has_a_unit_test(yaml):
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]
              if case.get("exp_alerts")}
    assert {r["alert"] for r in rules(yaml)} <= tested


def test_promtool_check_rules(promtool):
    r = run_promtool(promtool, "check", "rules", str(PROM / "alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_test_rules(promtool):
    r = run_promtool(promtool, "test", "rules", "alerts_test.yml", cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_check_config(promtool):
    r = run_promtool(promtool, "check", "config", str(PROM / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_workers_and_flower(yaml):
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["elk-workers"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    # Flower's task label is a task name (one series per job): nothing is dropped
    assert "metric_relabel_configs" not in jobs["flower"]
    assert cfg["rule_files"] == ["alerts.yml"]
