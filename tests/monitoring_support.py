"""Helpers for the monitoring tests: an isolated PostgreSQL schema, scored transactions, labels
and alerts planted the way the streaming job writes them, and a small trained Production model
(through pipelines.train, so it carries the drift reference artifact)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from psycopg2.extras import execute_values

from features.batch import compute_features
from features.definition import FEATURE_COLUMNS, FEATURE_SET_VERSION
from fraudops.contract.messages import TRANSACTION_COLUMNS
from fraudops.db import apply_migrations
from simulator.generator import generate_history


def create_schema(pg_conn, name: str) -> str:
    """Apply the migrations into a fresh schema ``name``; returns it."""
    apply_migrations(pg_conn, name)
    return name


def drop_schema(pg_conn, name: str) -> None:
    pg_conn.rollback()
    with pg_conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    pg_conn.commit()


def schema_targets(settings, schema: str, redis_prefix: str = ""):
    """streaming.sinks.SinkTargets of the local stack writing to PostgreSQL schema ``schema``
    (Redis keys under ``redis_prefix``; no alerts topic)."""
    from streaming.sinks import SinkTargets

    return SinkTargets(postgres_dsn=settings.postgres_dsn, pg_schema=schema, redis_host=settings.redis_host,
                       redis_port=settings.redis_port, redis_password=settings.redis_password,
                       redis_prefix=redis_prefix, kafka_brokers=settings.kafka_brokers, alerts_topic="unused")


def history_since(days: int, customers: int, seed: int, fraud_ratio: float = 0.02,
                  end: datetime | None = None) -> pd.DataFrame:
    """Simulated history of ``days`` days ending at ``end`` (default: now, to the second)."""
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    return generate_history(days=days, customers=customers, fraud_ratio=fraud_ratio, seed=seed,
                            start=end - timedelta(days=days))


def scored_rows(history: pd.DataFrame, model_version: str = "1", threshold: float = 0.5, seed: int = 0,
                scored_at: datetime | None = None, features: pd.DataFrame | None = None,
                scores: np.ndarray | None = None) -> pd.DataFrame:
    """Rows as the streaming job writes them: raw fields, features, a score and the decision.

    ``scores``: the model's scores; default: a noisy function of the hidden label (frauds score
    high more often), so precision and recall are neither 0 nor 1. ``scored_at``: one time for
    every row (default: one second after each transaction).
    """
    featured = features if features is not None else compute_features(history)
    rng = np.random.default_rng(seed)
    fraud = history["is_fraud"].astype(int).to_numpy()
    score = scores if scores is not None else np.where(fraud == 1, rng.beta(5, 2, len(fraud)), rng.beta(1, 5, len(fraud)))
    times = pd.to_datetime(history["transaction_time"], utc=True)
    rows = history[TRANSACTION_COLUMNS].copy()
    rows["transaction_time"] = times
    rows["fraud_score"] = score
    rows["is_fraud"] = score >= threshold
    rows["decision_threshold"] = threshold
    rows["model_version"] = model_version
    rows["feature_set_version"] = FEATURE_SET_VERSION
    rows["features"] = [json.dumps(r) for r in _feature_records(featured)]
    rows["scored_at"] = scored_at if scored_at is not None else times + pd.Timedelta(seconds=1)
    rows["produced_at"] = pd.to_datetime(rows["scored_at"], utc=True) - pd.Timedelta(milliseconds=250)
    return rows


def _feature_records(featured: pd.DataFrame) -> list[dict]:
    frame = featured[FEATURE_COLUMNS]
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def _values(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(None if (isinstance(v, float) and np.isnan(v)) or v is pd.NaT else
                  (v.to_pydatetime() if isinstance(v, pd.Timestamp) else (v.item() if isinstance(v, np.generic) else v))
                  for v in row) for row in frame.itertuples(index=False, name=None)]


def insert_rows(pg_conn, schema: str, table: str, frame: pd.DataFrame) -> int:
    """Insert ``frame`` (its columns) into ``schema.table``; commits."""
    columns = ", ".join(frame.columns)
    with pg_conn.cursor() as cur:
        execute_values(cur, f'INSERT INTO "{schema}".{table} ({columns}) VALUES %s', _values(frame), page_size=2000)
    pg_conn.commit()
    return len(frame)


def insert_scored(pg_conn, schema: str, rows: pd.DataFrame, with_alerts: bool = True) -> int:
    """Insert scored transactions and (for flagged rows) their pending fraud_alerts."""
    insert_rows(pg_conn, schema, "transactions", rows)
    if with_alerts:
        alerts = rows.loc[rows["is_fraud"], ["transaction_id", "user_id", "amount", "currency", "merchant", "country",
                                             "transaction_time", "fraud_score", "model_version"]]
        alerts = alerts.assign(detection_time=rows.loc[rows["is_fraud"], "scored_at"])
        if not alerts.empty:
            insert_rows(pg_conn, schema, "fraud_alerts", alerts)
    return len(rows)


def insert_labels(pg_conn, schema: str, history: pd.DataFrame, source: str = "chargeback",
                  only_fraud: bool = True, known_by: datetime | None = None) -> int:
    """Labels of ``history`` rows whose label_time is known by ``known_by`` (default: now)."""
    known_by = pd.Timestamp(known_by or datetime.now(UTC))
    rows = history[history["is_fraud"].astype(int) == 1] if only_fraud else history
    rows = rows[pd.to_datetime(rows["label_time"], utc=True) <= known_by]
    labels = pd.DataFrame({"transaction_id": rows["transaction_id"], "is_fraud": rows["is_fraud"].astype(bool),
                           "source": source, "labeled_at": pd.to_datetime(rows["label_time"], utc=True)})
    return insert_rows(pg_conn, schema, "labels", labels) if not labels.empty else 0


def count_rows(pg_conn, schema: str, table: str, where: str = "TRUE", params=None) -> int:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{schema}".{table} WHERE {where}', params)
        n = cur.fetchone()[0]
    pg_conn.commit()
    return int(n)
