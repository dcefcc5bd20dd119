"""The streaming job's Prometheus metrics (streaming.prometheus): a micro-batch's results move the
counters and histograms as one observation at a time would, and the driver's HTTP server serves
them (real HTTP, a free port)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Histogram

from streaming import prometheus
from streaming.scoring_pass import reason_counts, stats_summary
from tests.observability_support import scrape, value

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_bulk_histogram_equals_prometheus_own_histogram():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.exponential(1.5, 5000), [0.1, 0.25, 5.0, 120.0, 500.0, np.nan]])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    bulk = prometheus.BulkHistogram("lat_seconds", "latency", prometheus.LATENCY_BUCKETS, ours)
    reference = Histogram("lat_seconds", "latency", buckets=prometheus.LATENCY_BUCKETS, registry=theirs)
    bulk.observe_many(values[: len(values) // 2])
    bulk.observe_many(values[len(values) // 2:])
    for v in values[np.isfinite(values)]:
        reference.observe(v)

    def samples(registry):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in registry.collect() for s in family.samples if not s.name.endswith("_created")}

    got, expected = samples(ours), samples(theirs)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key]), key


def test_reason_counts_bound_the_reasons_to_their_kind():
    quarantine = pd.DataFrame({"reason": ["duplicate_key:amount", "duplicate_key:user_id", "missing_field:amount",
                                          "not_json"]})
    assert reason_counts(quarantine) == {"duplicate_key": 2, "missing_field": 1, "not_json": 1}
    assert reason_counts(quarantine.iloc[:0]) == {}


def test_stats_of_the_tasks_are_summed():
    rows = [{"rows": 3, "alerts": 1, "redis_missed": 0, "quarantined": 2, "latencies": [0.5, 1.0, 2.0],
             "quarantine_reasons": json.dumps({"not_json": 2})},
            {"rows": 2, "alerts": 0, "redis_missed": 1, "quarantined": 1, "latencies": [0.2, 0.3],
             "quarantine_reasons": json.dumps({"not_json": 1, "unknown_currency": 0})}]
    summary = stats_summary(rows)
    assert (summary["rows"], summary["alerts"], summary["quarantined"]) == (5, 1, 3)
    assert summary["quarantine_reasons"] == {"not_json": 3, "unknown_currency": 0}
    assert len(summary["latencies"]) == 5


def test_a_batch_moves_the_served_metrics():
    server = prometheus.serve(free_port())
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        before = scrape(url)
        stats = {"rows": 40, "alerts": 3, "redis_missed": 1, "quarantined": 5,
                 "latencies": np.array([0.2] * 30 + [4.0] * 10),
                 "quarantine_reasons": {"missing_field": 4, "duplicate_key": 1}}
        prometheus.observe_scoring_batch(stats, duration_seconds=0.8, model_version="7")
        prometheus.observe_labels_batch(6, ["missing_field:label_time"], duration_seconds=0.05)
        after = scrape(url)
    finally:
        server.shutdown()
        server.server_close()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    p = prometheus.PREFIX
    assert delta(p + "transactions_total") == 40 and delta(p + "alerts_total") == 3
    assert delta(p + "redis_alerts_missed_total") == 1 and delta(p + "labels_total") == 6
    assert delta(p + "quarantined_total", reason="missing_field") == 5  # 4 messages + 1 label
    assert delta(p + "quarantined_total", reason="duplicate_key") == 1
    assert delta(p + "batches_total", query="scoring") == 1 and delta(p + "batches_total", query="labels") == 1
    assert delta(p + "end_to_end_latency_seconds_count") == 40
    assert delta(p + "end_to_end_latency_seconds_bucket", le="0.25") == 30
    assert delta(p + "end_to_end_latency_seconds_bucket", le="5.0") == 40
    assert delta(p + "end_to_end_latency_seconds_sum") == pytest.approx(30 * 0.2 + 10 * 4.0)
    assert delta(p + "batch_duration_seconds_count", query="scoring") == 1
    assert value(after, p + "model_version") == 7.0
    assert value(after, p + "last_batch_timestamp_seconds") > 0


def test_no_server_on_port_zero_or_a_taken_port():
    assert prometheus.serve(0) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert prometheus.serve(taken.getsockname()[1]) is None  # logged; the job scores on


def test_the_jobs_metrics_port_comes_from_the_settings():
    from fraudops.settings import Settings
    from streaming.scoring_job import parse_args

    settings = Settings()
    options = parse_args([], settings)
    assert (options.metrics_port, options.metrics_host) == (settings.streaming_metrics_port, "127.0.0.1") == (9109, "127.0.0.1")
    options = parse_args(["--metrics-port", "0", "--metrics-host", "0.0.0.0"], settings)  # noqa: S104 - a container's
    assert (options.metrics_port, options.metrics_host) == (0, "0.0.0.0")  # noqa: S104
    with pytest.raises(SystemExit):
        parse_args(["--metrics-port", "70000"], settings)
