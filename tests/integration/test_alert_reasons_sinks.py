"""Reasons travel with every alert: the stream's scoring step (streaming.scoring_pass.score_rows, the
registry pyfunc as served) computes them for the alerted rows only, and the sinks store the same
list in PostgreSQL (fraud_alerts.reasons, jsonb), in Redis (fraud_alert:<id>) and in the alerts
payload of the Kafka topic. Real MLflow registry, PostgreSQL and Redis; a small model of its own."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from tests.monitoring_support import create_schema, drop_schema, schema_targets

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"reasons_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


@pytest.fixture(scope="module")
def served(settings):
    """A small registered model, resolved as the job resolves MODEL_URI."""
    import uuid

    from fraudops.modeling.registry import resolve_served_model
    from pipelines.train import train_model
    from simulator.generator import generate_history

    history = generate_history(days=14, customers=250, fraud_ratio=0.03, seed=3)
    name = f"fraud-detector-reasons-{uuid.uuid4().hex[:8]}"
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.parquet"
        history.to_parquet(path, index=False)
        trained = train_model("hist_gradient_boosting", data=str(path), params={"max_iter": 40}, model_name=name,
                              experiment_name=f"tests-reasons-{name}", settings=settings)
    return resolve_served_model(f"models:/{name}/{trained.version}"), history


def test_alerts_carry_their_reasons_to_postgres_redis_and_the_topic_payload(settings, schema, served, redis_client):
    from streaming.scoring_pass import score_rows
    from streaming.sinks import (
        alert_payload,
        pg_connect,
        push_alerts_to_redis,
        write_scored_chunk,
    )

    model, history = served
    batch = compute_features(history.drop(columns=["is_fraud", "fraud_scenario", "label_time"])).tail(300)
    batch = batch.assign(kafka_partition=0, kafka_offset=np.arange(len(batch)), produced_at=pd.Timestamp.now(tz="UTC"))
    first = score_rows(batch, model, settings.mlflow_tracking_uri)
    # a threshold at the median score: half of the batch alerts, half does not
    served_half = dataclasses.replace(model, threshold=float(np.median(first["fraud_score"])))
    scored = score_rows(batch, served_half, settings.mlflow_tracking_uri).assign(scored_at=pd.Timestamp.now(tz="UTC"))
    assert scored["reasons"].notna().tolist() == scored["is_fraud"].tolist()

    targets = schema_targets(settings, schema, redis_prefix=f"{schema}:")
    conn = pg_connect(targets)
    try:
        alerts, _ = write_scored_chunk(conn, scored, targets)
        with conn.cursor() as cur:
            cur.execute("SELECT transaction_id, reasons FROM fraud_alerts")
            stored = dict(cur.fetchall())
    finally:
        conn.close()
    assert len(stored) == int(scored["is_fraud"].sum()) > 0
    assert all(isinstance(r, list) and r and set(r[0]) == {"name", "value", "contribution"} for r in stored.values())

    assert push_alerts_to_redis(alerts, targets, redis_client) == 0
    some = alerts["transaction_id"].iloc[0]
    cached = json.loads(redis_client.get(targets.redis_alert_key(some)))
    assert cached["reasons"] == stored[some]
    assert json.loads(alert_payload(alerts.iloc[0].to_dict()))["reasons"] == stored[alerts["transaction_id"].iloc[0]]
    redis_client.delete(*[targets.redis_alert_key(t) for t in alerts["transaction_id"]], targets.redis_recent_key)
