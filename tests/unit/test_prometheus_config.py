"""The Prometheus configuration, alerting rules and Alertmanager configuration in the repository:
valid for promtool / amtool (Debian's prometheus and prometheus-alertmanager packages, installed
by `make setup`; a missing tool fails), the rules unit tested (monitoring/prometheus/alerts_test.yml),
every series they read exported by the project, every exporter scraped."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.observability_support import (
    PROMETHEUS_DIR,
    PROMETHEUS_OWN,
    ROOT,
    exporter_names,
    promql_metric_names,
)

pytestmark = pytest.mark.unit

CONFIGS = ("prometheus.yml", "prometheus.local.yml")
RULES = PROMETHEUS_DIR / "alerts.yml"
# what the operators asked alerts for (issue 25), as the `rule` label of the alerts
REQUIRED_RULES = {"service_down", "model_degradation", "fraud_rate_spike", "quarantine_rate", "latency"}
EXPORTER_JOBS = {"streaming", "decisions", "portal", "metrics-collector"}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: `make setup` installs it (Debian package prometheus / prometheus-alertmanager)"
    return path


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_checks_the_config(config):
    done = run(tool("promtool"), "check", "config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_checks_the_rules():
    done = run(tool("promtool"), "check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_unit_tests_pass():
    done = run(tool("promtool"), "test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_a_wrong_expectation_fails_the_rules_unit_tests(tmp_path):
    """The rules tests can fail: one expected label changed makes promtool report it."""
    shutil.copy(RULES, tmp_path / RULES.name)
    broken = (PROMETHEUS_DIR / "alerts_test.yml").read_text().replace("rule: quarantine_rate", "rule: latency", 1)
    (tmp_path / "alerts_test.yml").write_text(broken)
    done = subprocess.run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "QuarantineRateHigh" in done.stdout + done.stderr


def test_amtool_checks_the_alertmanager_config():
    done = subprocess.run([tool("amtool"), "check-config", "monitoring/alertmanager/alertmanager.yml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_cover_what_operators_asked_for():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert {rule["labels"]["rule"] for rule in alerts} >= REQUIRED_RULES
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "alerts_test.yml").read_text()))
    assert {rule["alert"] for rule in alerts} <= tested, "every alert has a promtool unit test"


def test_every_series_the_rules_read_is_exported():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    known = exporter_names() | PROMETHEUS_OWN | recorded
    unknown = {rule.get("alert") or rule.get("record"): promql_metric_names(rule["expr"]) - known
               for group in groups for rule in group["rules"]}
    assert not {k: v for k, v in unknown.items() if v}


@pytest.mark.parametrize("config", CONFIGS)
def test_every_exporter_is_scraped(config):
    parsed = yaml.safe_load((PROMETHEUS_DIR / config).read_text())
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert set(jobs) >= EXPORTER_JOBS
    assert parsed["rule_files"] == [RULES.name]
    assert parsed["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


def test_the_local_config_is_the_containers_one_on_loopback():
    containers, local = (yaml.safe_load((PROMETHEUS_DIR / c).read_text()) for c in CONFIGS)
    for parsed in (containers, local):
        for job in parsed["scrape_configs"]:
            job["static_configs"] = [{"targets": [t.split(":")[1] for t in sc["targets"]]}
                                     for sc in job["static_configs"]]  # the ports only
        parsed["alerting"] = None
    assert containers == local
    targets = [t for job in yaml.safe_load((PROMETHEUS_DIR / "prometheus.local.yml").read_text())["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]]
    assert all(t.split(":")[0] in ("127.0.0.1", "localhost") for t in targets)


def test_the_scraped_ports_are_the_services_defaults():
    from fraudops.settings import Settings
    from monitoring.metrics_collector import DEFAULT_PORT

    defaults = Settings()
    expected = {"streaming": defaults.streaming_metrics_port, "decisions": defaults.decisions_port,
                "portal": defaults.portal_port, "metrics-collector": DEFAULT_PORT}
    for config in CONFIGS:
        jobs = {job["job_name"]: job for job in yaml.safe_load((PROMETHEUS_DIR / config).read_text())["scrape_configs"]}
        for name, port in expected.items():
            assert jobs[name]["static_configs"][0]["targets"][0].endswith(f":{port}"), (config, name)
