"""What the observability tests share: the metric names the project's exporters register, the
metric names a PromQL expression reads, and a scrape of a /metrics endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
# series Prometheus makes itself (scrape health, alert state)
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}


def registered_names(registry) -> set[str]:
    """Every series name a registry can expose (its families with their type's suffixes)."""
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def exporter_names() -> set[str]:
    """The series names of the streaming job, the decision service, the portal and the collector."""
    from decisions import metrics as decisions_metrics
    from monitoring.metrics_collector import PrometheusExporter
    from portal import metrics as portal_metrics
    from streaming import prometheus as stream_metrics

    names = set()
    for registry in (stream_metrics.REGISTRY, decisions_metrics.REGISTRY, portal_metrics.REGISTRY,
                     PrometheusExporter().registry):
        names |= registered_names(registry)
    return names


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names a PromQL expression reads: identifiers that are not
    functions, keywords, label names or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, legends)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group(0).lower() in KEYWORDS:
            continue  # a function call or an operator
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent or unit of a number (1e3)
        names.add(match.group(0))
    return names


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value of a /metrics endpoint, over real HTTP."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """One sample's value (0 when the series does not exist yet: a counter not yet incremented)."""
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)
