"""monitoring.metrics_collector against the real stack: planted rows in a fresh schema give the
expected values, which land in monitoring_metrics and on the Prometheus endpoint."""

from __future__ import annotations

import dataclasses
import math
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.metrics_collector import METRICS, PrometheusExporter, collect, collect_and_publish, main
from monitoring.performance import decision_performance
from tests.monitoring_support import (
    count_rows,
    create_schema,
    drop_schema,
    history_since,
    insert_labels,
    insert_rows,
    insert_scored,
    scored_rows,
)

pytestmark = pytest.mark.integration
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"coll_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


@pytest.fixture
def planted(pg_conn, schema):
    """400 rows scored two minutes ago by version 3 (labelled with the hidden truth), 200 rows
    scored three hours ago by version 2. Returns the recent rows with a ``truth`` column."""
    history = history_since(days=3, customers=120, seed=21, fraud_ratio=0.05)
    assert len(history) >= 600, "the planted history must hold 400 recent and 200 older rows"
    recent = history.tail(400)
    now = datetime.now(UTC)
    rows = scored_rows(recent, model_version="3", scored_at=now - timedelta(minutes=2))
    insert_scored(pg_conn, schema, rows)
    insert_scored(pg_conn, schema, scored_rows(history.iloc[:200], model_version="2", scored_at=now - timedelta(hours=3)),
                  with_alerts=False)
    insert_labels(pg_conn, schema, recent, source="simulator", only_fraud=False, known_by=FAR_FUTURE)
    return rows.assign(truth=recent["is_fraud"].astype(bool).to_numpy())


def _values(rows):
    return {(r.name, tuple(sorted(r.labels.items()))): r.value for r in rows}


def test_collect_computes_the_seed_metrics(settings, schema, planted, unique_name):
    settings = dataclasses.replace(settings, model_name=f"no-model-{unique_name}")
    values = _values(collect(settings, schema))

    assert values[("transactions_per_minute", ())] == pytest.approx(len(planted) / 5)
    assert values[("average_amount", ())] == pytest.approx(planted["amount"].mean())
    assert values[("fraud_detection_rate", ())] == pytest.approx(planted["is_fraud"].mean())
    assert values[("average_fraud_score", ())] == pytest.approx(planted["fraud_score"].mean())
    assert values[("pending_alerts", ())] == planted["is_fraud"].sum()
    assert values[("scoring_model_version", ())] == 3.0
    assert values[("processing_latency_seconds", (("stat", "p50"),))] == pytest.approx(0.25)
    truth = decision_performance(planted["is_fraud"].tolist(), planted["truth"].tolist())
    assert 0 < truth["precision"] < 1
    assert values[("model_precision", ())] == pytest.approx(truth["precision"])
    assert values[("model_recall", ())] == pytest.approx(truth["recall"])
    assert values[("model_f1", ())] == pytest.approx(truth["f1"])
    assert values[("labelled_transactions", ())] == len(planted)
    assert values[("service_up", (("service", "postgres"),))] == 1.0
    assert values[("active_model_version", (("model", settings.model_name),))] is None


def test_precision_and_recall_use_the_latest_label(settings, pg_conn, schema, planted):
    newer = planted[["transaction_id"]].assign(is_fraud=True, source="analyst", labeled_at=FAR_FUTURE)
    insert_rows(pg_conn, schema, "labels", newer)  # newer analyst labels: every row is fraud

    values = _values(collect(settings, schema))

    assert values[("model_precision", ())] == pytest.approx(1.0)
    assert values[("model_recall", ())] == pytest.approx(planted["is_fraud"].mean())
    assert values[("labelled_transactions", ())] == len(planted)


def test_rows_are_stored_and_served_in_prometheus_format(settings, pg_conn, schema, planted):
    exporter = PrometheusExporter()
    server = exporter.serve(port=0)
    try:
        rows = collect_and_publish(settings, schema, exporter)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert server.server_address[0] == "127.0.0.1"
    assert count_rows(pg_conn, schema, "monitoring_metrics", "source = 'collector'") == len(rows)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("fraudops_pending_alerts", ())] == planted["is_fraud"].sum()
    assert samples[("fraudops_service_up", (("service", "redis"),))] == 1.0
    assert {f"fraudops_{name}" for name in METRICS} <= {name for name, _ in samples}


def test_undefined_values_are_null_in_the_table_and_nan_in_prometheus(settings, pg_conn, schema):
    exporter = PrometheusExporter()
    collect_and_publish(settings, schema, exporter)  # empty schema: no rows, no labels

    assert count_rows(pg_conn, schema, "monitoring_metrics",
                      "metric_name = 'average_amount' AND metric_value IS NULL") == 1
    sample = next(s for f in exporter.registry.collect() for s in f.samples if s.name == "fraudops_model_precision")
    assert math.isnan(sample.value)


def test_once_flag_and_bad_schema(schema, planted, capsys):
    assert main(["--once", "--pg-schema", schema]) == 0
    assert "pending_alerts" in capsys.readouterr().out
    assert main(["--once", "--pg-schema", "no_such_schema_y"]) == 2
    assert "pg_schema='no_such_schema_y'" in capsys.readouterr().err


def test_the_latest_drift_check_is_collected(settings, schema):
    from monitoring.storage import MetricRow, connect_schema, insert_metric_rows

    assert _values(collect(settings, schema))[("dataset_drift", ())] is None  # no check yet
    conn = connect_schema(settings, schema)
    try:
        for share, drifted in ((0.1, 0.0), (0.6, 1.0)):  # two checks: the newer one counts
            insert_metric_rows(conn, "drift", [MetricRow("drift_share", share, {}), MetricRow("dataset_drift", drifted, {})])
            conn.commit()
    finally:
        conn.close()

    values = _values(collect(settings, schema))
    assert values[("drift_share", ())] == pytest.approx(0.6)
    assert values[("dataset_drift", ())] == 1.0
