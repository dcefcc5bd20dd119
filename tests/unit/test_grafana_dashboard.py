"""The Grafana dashboard (monitoring/grafana/dashboards/) and its provisioning: valid JSON of the
dashboard model, the panels operators need, and every query reading series the project exports."""

from __future__ import annotations

import json

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

GRAFANA = ROOT / "monitoring" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# what the dashboard must show (issue 25), each found in a panel title
REQUIRED_PANELS = ("throughput", "latency", "alert rate", "quarantine", "model version", "drift")


def load(path):
    return json.loads(path.read_text())


def query_panels(dashboard):
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def recorded_names() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_there_is_a_dashboard():
    assert [p.name for p in DASHBOARDS] == ["fraudops-overview.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_model_is_well_formed(path):
    dashboard = load(path)
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert panel["title"] and panel["type"] in ("row", "timeseries", "stat", "gauge", "table"), panel
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    for panel in query_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)) and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_shows_what_operators_need(path):
    titles = " | ".join(panel["title"].lower() for panel in load(path)["panels"])
    missing = [need for need in REQUIRED_PANELS if need not in titles]
    assert not missing, f"no panel about {missing} in: {titles}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_reads_exported_series(path):
    known = exporter_names() | PROMETHEUS_OWN | recorded_names()
    read = {}
    for panel in query_panels(load(path)):
        for target in panel["targets"]:
            names = promql_metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            read[f"{panel['title']} {target['refId']}"] = names - known
    assert not {k: v for k, v in read.items() if v}
    # and each exporter is on the dashboard
    every = {name for panel in query_panels(load(path)) for t in panel["targets"] for name in promql_metric_names(t["expr"])}
    for prefix in ("fraudops_stream_", "fraudops_decision_", "fraudops_portal_", "fraudops_model_"):
        assert any(name.startswith(prefix) for name in every), prefix


def test_promql_metric_names():
    expr = ('histogram_quantile(0.95, sum by (le, query) (rate(fraudops_stream_batch_duration_seconds_bucket'
            '{query="scoring", le!="1e3"}[5m]))) / on() group_left sum(up) > 1e3 and fraudops:stream_alert_ratio:rate1d')
    assert promql_metric_names(expr) == {"fraudops_stream_batch_duration_seconds_bucket", "up",
                                         "fraudops:stream_alert_ratio:rate1d"}
    assert "no_such_metric" in promql_metric_names("rate(no_such_metric[1m])")


def test_the_provisioning_points_at_the_dashboards_and_prometheus():
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [(d["uid"], d["type"], d["url"]) for d in source["datasources"]] == [
        ("prometheus", "prometheus", "http://prometheus:9090")]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "fraudops.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
