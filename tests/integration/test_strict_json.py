"""Every JSON the project writes to PostgreSQL is strict: a NaN or an infinity in an audit detail or a
metric label is stored as null (PostgreSQL refuses ``NaN`` in json: the retrain's audit write
used to crash on it)."""

from __future__ import annotations

import json

import pytest

from fraudops.records import MetricRow, insert_audit, insert_metric_rows
from tests.monitoring_support import create_schema, drop_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"js_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


@pytest.fixture
def conn(settings, schema):
    from monitoring.storage import connect_schema

    connection = connect_schema(settings, schema)
    yield connection
    connection.close()


def test_audit_details_with_nan_and_infinity_are_stored_as_null(conn):
    details = {"metrics": {"candidate_auc": float("nan"), "lift": float("inf")}, "threshold": 0.5}
    audit_id = insert_audit(conn, "model_retrained", "tests", details)
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT details::text FROM audit_log WHERE audit_id = %s", (audit_id,))
        stored = json.loads(cur.fetchone()[0])
    assert stored == {"metrics": {"candidate_auc": None, "lift": None}, "threshold": 0.5}


def test_metric_labels_with_nan_are_stored_as_null(conn):
    insert_metric_rows(conn, "tests", [MetricRow("score_psi", float("nan"), {"bucket": float("-inf")})])
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT metric_value, labels::text FROM monitoring_metrics WHERE source = 'tests'")
        value, labels = cur.fetchone()
    assert value is None and json.loads(labels) == {"bucket": None}
