"""The SQL reads of the monitoring commands, written once (tables: fraudops/contract/migrations).

Conventions:
* a transaction's label is its latest one (any source), as in the fraud_summary view and
  features.merchant ("the latest usable label counts");
* "recent" means by ``scored_at`` (wall clock of the scoring job), not by transaction_time
  (event time, which a replay or a fast simulator may put anywhere).
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from monitoring.storage import read_frame, read_one
from monitoring.windows import Window

# Latest label of each labelled transaction.
LATEST_LABELS_SQL = (
    "SELECT DISTINCT ON (transaction_id) transaction_id, is_fraud, source, labeled_at "
    "FROM labels ORDER BY transaction_id, labeled_at DESC, source"
)

SCORED_ROW_COLUMNS = ["transaction_id", "user_id", "amount", "currency", "transaction_time", "scored_at",
                      "model_version", "fraud_score", "is_fraud", "features", "label"]


def recent_scored_rows(conn, window: Window, max_rows: int = 50_000) -> pd.DataFrame:
    """Scored transactions of ``window`` (newest first), with the feature vector and the label.

    Returns:
        DataFrame with :data:`SCORED_ROW_COLUMNS`; ``features`` holds the JSONB dicts and
        ``label`` the latest label (None when unlabelled).
    """
    limit = min(window.rows, max_rows) if window.rows is not None else max_rows
    since = "AND t.scored_at >= now() - %(duration)s" if window.duration is not None else ""
    sql = f"""
        SELECT t.transaction_id, t.user_id, t.amount, t.currency, t.transaction_time, t.scored_at,
               t.model_version, t.fraud_score, t.is_fraud, t.features, l.is_fraud AS label
        FROM transactions t
        LEFT JOIN ({LATEST_LABELS_SQL}) l ON l.transaction_id = t.transaction_id
        WHERE t.scored_at IS NOT NULL AND t.features IS NOT NULL {since}
        ORDER BY t.scored_at DESC, t.transaction_id
        LIMIT %(limit)s"""
    frame = read_frame(conn, sql, {"duration": window.duration, "limit": limit})
    return frame if not frame.empty else pd.DataFrame(columns=SCORED_ROW_COLUMNS)


def labelled_decisions(conn, since: timedelta) -> pd.DataFrame:
    """(transaction_id, model_version, decision, fraud_score, label) of labelled rows scored since ``since`` ago."""
    sql = f"""
        SELECT t.transaction_id, t.model_version, t.is_fraud AS decision, t.fraud_score, l.is_fraud AS label
        FROM transactions t JOIN ({LATEST_LABELS_SQL}) l ON l.transaction_id = t.transaction_id
        WHERE t.scored_at >= now() - %(since)s AND t.is_fraud IS NOT NULL"""
    return read_frame(conn, sql, {"since": since})


def traffic_summary(conn, since: timedelta) -> dict:
    """Transactions scored in the last ``since``: count, flagged, mean amount, mean score."""
    return read_one(conn, """
        SELECT count(*) AS transactions, count(*) FILTER (WHERE is_fraud) AS flagged,
               avg(amount) AS average_amount, avg(fraud_score) AS average_fraud_score
        FROM transactions WHERE scored_at >= now() - %(since)s""", {"since": since})


def transactions_today(conn) -> int:
    """Transactions scored since midnight UTC."""
    row = read_one(conn, """
        SELECT count(*) AS n FROM transactions
        WHERE scored_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""")
    return int(row["n"])


def pending_alert_count(conn) -> int:
    """fraud_alerts still waiting for an analyst."""
    return int(read_one(conn, "SELECT count(*) AS n FROM fraud_alerts WHERE alert_status = 'pending'")["n"])


def processing_latency(conn, since: timedelta) -> dict:
    """p50/p95/max seconds from Kafka produce time to scoring, over rows scored in the last ``since``."""
    return read_one(conn, """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY s) AS p95, max(s) AS max, count(s) AS n
        FROM (SELECT extract(epoch FROM scored_at - produced_at) AS s FROM transactions
              WHERE scored_at >= now() - %(since)s AND produced_at IS NOT NULL) x""", {"since": since})


def latest_scoring_version(conn) -> str | None:
    """model_version of the most recently scored row (None before the first)."""
    row = read_one(conn, "SELECT model_version FROM transactions WHERE scored_at IS NOT NULL "
                         "ORDER BY scored_at DESC LIMIT 1")
    return row.get("model_version")


def recent_alerts(conn, since: timedelta) -> pd.DataFrame:
    """fraud_alerts detected in the last ``since`` that no analyst marked false_positive."""
    return read_frame(conn, """
        SELECT transaction_id, user_id, amount, currency, merchant, country, transaction_time,
               fraud_score, model_version, detection_time, alert_status
        FROM fraud_alerts
        WHERE detection_time >= now() - %(since)s AND alert_status <> 'false_positive'
        ORDER BY transaction_time""", {"since": since})


def latest_metric(conn, source: str, metric_name: str, max_age: timedelta) -> dict:
    """The newest monitoring_metrics row of (source, metric_name) younger than ``max_age`` ({} if none)."""
    return read_one(conn, """
        SELECT metric_id, metric_value, labels, recorded_at FROM monitoring_metrics
        WHERE source = %(source)s AND metric_name = %(name)s AND recorded_at >= now() - %(age)s
        ORDER BY recorded_at DESC, metric_id DESC LIMIT 1""", {"source": source, "name": metric_name, "age": max_age})
