"""The portal's SQL reads (tables: fraudops/contract/migrations), every value a query parameter.

Reads: fraud_alerts, transactions, labels, audit_log, monitoring_metrics of the portal's schema.
The monitoring numbers reuse monitoring.queries; only what the pages need beyond them is here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal.filters import STREAM_ONLY, AlertFilters

# the columns of a queue row (the live queue sends the same), written out so the SQL stays constant text:
# the alert (a.) and the decision service's answer from its transaction (t., migration 0006; NULL when the
# stream alone scored it). fraud_alerts.decision is the alert's decision (NULL: alerted by the stream only).
QUEUE_SELECT = ("SELECT a.alert_id, a.transaction_id, a.user_id, a.amount, a.currency, a.merchant, a.country, "
                "a.transaction_time, a.fraud_score, a.model_version, a.detection_time, a.alert_status, a.reviewed_by, "
                "a.reviewed_at, a.decision, t.decision_threshold, t.decline_threshold, t.decided_at, "
                "t.decision_degraded, t.degraded_reason "
                "FROM fraud_alerts a LEFT JOIN transactions t ON t.transaction_id = a.transaction_id")
DETAIL_ALERT_SQL = ("SELECT a.alert_id, a.transaction_id, a.user_id, a.amount, a.currency, a.merchant, a.country, "
                    "a.transaction_time, a.fraud_score, a.model_version, a.detection_time, a.alert_status, "
                    "a.reviewed_by, a.reviewed_at, a.decision, t.decision_threshold, t.decline_threshold, "
                    "t.decided_at, t.decision_degraded, t.degraded_reason, a.notes, a.reasons, a.rules_fired "
                    "FROM fraud_alerts a LEFT JOIN transactions t ON t.transaction_id = a.transaction_id "
                    "WHERE a.transaction_id = %s")
TRANSACTION_SQL = ("SELECT transaction_id, user_id, amount, currency, merchant, merchant_id, merchant_category, "
                   "transaction_time, country, transaction_type, channel, device_id, fraud_score, is_fraud, "
                   "decision_threshold, model_version, feature_set_version, produced_at, scored_at, "
                   "decision, decline_threshold, decided_at, decision_degraded, degraded_reason "
                   "FROM transactions WHERE transaction_id = %s")
RECENT_SQL = ("SELECT transaction_id, transaction_time, amount, currency, merchant, country, transaction_type, "
              "fraud_score, is_fraud FROM transactions WHERE user_id = %s ORDER BY transaction_time DESC LIMIT %s")

# (filter attribute, constant SQL fragment); the values travel as parameters of the same name
_FILTER_SQL = (
    ("status", "a.alert_status = %(status)s"),
    ("min_score", "a.fraud_score >= %(min_score)s"),
    ("max_score", "a.fraud_score <= %(max_score)s"),
    ("country", "a.country = %(country)s"),
    ("model_version", "a.model_version = %(model_version)s"),
    ("since", "a.detection_time >= %(since)s"),
    ("until", "a.detection_time < %(until)s"),
)
# the decision filter: a decision of the service, or STREAM_ONLY (alerted by the stream alone)
_DECISION_SQL = "a.decision = %(decision)s"
_STREAM_ONLY_SQL = "a.decision IS NULL"
DRIFT_METRICS = ("dataset_drift", "drift_share", "drifted_columns_count", "score_drift_score", "current_rows")
_CURSOR_SQL = "(a.detection_time, a.alert_id) < (%(before_time)s, %(before_id)s)"


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _filter_clause(filters: AlertFilters) -> tuple[str, dict[str, Any]]:
    fragments = [sql for name, sql in _FILTER_SQL if getattr(filters, name) is not None]
    params = {name: getattr(filters, name) for name, _ in _FILTER_SQL}
    if filters.decision is not None:
        fragments.append(_STREAM_ONLY_SQL if filters.decision == STREAM_ONLY else _DECISION_SQL)
        params["decision"] = filters.decision
    if filters.before is not None:
        fragments.append(_CURSOR_SQL)
        params.update(before_time=filters.before.detection_time, before_id=filters.before.alert_id)
    return (" AND ".join(fragments) or "TRUE"), params


def alert_queue(conn, filters: AlertFilters) -> tuple[list[dict[str, Any]], bool]:
    """One page of alerts, newest first (keyset paging). Returns (rows, whether older rows exist)."""
    where_sql, params = _filter_clause(filters)
    with conn.cursor() as cur:
        # where_sql joins constant fragments of _FILTER_SQL; every value is a parameter
        cur.execute(f"{QUEUE_SELECT} WHERE {where_sql} "
                    "ORDER BY a.detection_time DESC, a.alert_id DESC LIMIT %(limit)s",
                    {**params, "limit": filters.limit + 1})
        rows = _rows(cur)
    return rows[: filters.limit], len(rows) > filters.limit


def queue_counts(conn) -> dict[str, int]:
    """Alerts per status (all time)."""
    with conn.cursor() as cur:
        cur.execute("SELECT alert_status, count(*) FROM fraud_alerts GROUP BY alert_status")
        return {status: int(n) for status, n in cur.fetchall()}


def filter_choices(conn, since: timedelta = timedelta(days=30)) -> dict[str, list[str]]:
    """Countries and model versions of recent alerts (the filter form's suggestions)."""
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT country FROM fraud_alerts WHERE detection_time >= now() - %s "
                    "AND country IS NOT NULL ORDER BY 1", (since,))
        countries = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT DISTINCT model_version FROM fraud_alerts WHERE detection_time >= now() - %s "
                    "AND model_version IS NOT NULL ORDER BY 1", (since,))
        versions = [r[0] for r in cur.fetchall()]
    return {"countries": countries, "model_versions": versions}


def alerts_in_id_range(conn, low: int, high: int, limit: int = 500) -> list[dict[str, Any]]:
    """Queue rows with ``low <= alert_id <= high`` (the live queue's notifications name such ranges)."""
    with conn.cursor() as cur:
        cur.execute(QUEUE_SELECT + " WHERE a.alert_id BETWEEN %s AND %s ORDER BY a.alert_id LIMIT %s", (low, high, limit))
        return _rows(cur)


def alerts_after(conn, alert_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """Queue rows with a larger alert_id (catch-up after the live listener reconnects)."""
    return alerts_in_id_range(conn, alert_id + 1, 2**62, limit)


def newest_alert_id(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(alert_id), 0) FROM fraud_alerts")
        return int(cur.fetchone()[0])


def alert_detail(conn, transaction_id: str) -> dict[str, Any] | None:
    """The alert of ``transaction_id`` (with its decision columns, as a queue row) with its transaction,
    labels and review history (None: no alert)."""
    with conn.cursor() as cur:
        cur.execute(DETAIL_ALERT_SQL, (transaction_id,))
        alerts = _rows(cur)
        if not alerts:
            return None
        cur.execute(TRANSACTION_SQL, (transaction_id,))
        transactions = _rows(cur)
        cur.execute("SELECT source, is_fraud, labeled_at FROM labels WHERE transaction_id = %s "
                    "ORDER BY labeled_at DESC", (transaction_id,))
        labels = _rows(cur)
        cur.execute("SELECT event_type, actor, details, created_at FROM audit_log "
                    "WHERE details ? 'transaction_id' AND details ->> 'transaction_id' = %s "
                    "ORDER BY created_at DESC LIMIT 50", (transaction_id,))
        history = _rows(cur)
    return {"alert": alerts[0], "transaction": transactions[0] if transactions else None,
            "labels": labels, "history": history}


def user_recent_transactions(conn, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The user's latest transactions (event time), newest first."""
    with conn.cursor() as cur:
        cur.execute(RECENT_SQL, (user_id, limit))
        return _rows(cur)


# --- dashboard ----------------------------------------------------------------------------------
def throughput_per_minute(conn, since: timedelta) -> list[dict[str, Any]]:
    """Transactions and alerts scored per minute over the last ``since`` (minutes without rows left out)."""
    with conn.cursor() as cur:
        cur.execute("SELECT date_trunc('minute', scored_at) AS minute, count(*) AS transactions, "
                    "count(*) FILTER (WHERE is_fraud) AS alerts FROM transactions "
                    "WHERE scored_at >= now() - %s GROUP BY 1 ORDER BY 1", (since,))
        return _rows(cur)


def streaming_latency_series(conn, since: timedelta) -> list[dict[str, Any]]:
    """Per minute, the mean of the scoring job's micro-batch end-to-end latency p50 and p95
    (monitoring_metrics ``latency_p50_seconds`` / ``latency_p95_seconds``; keys minute, metric_name, seconds)."""
    with conn.cursor() as cur:
        cur.execute("SELECT date_trunc('minute', recorded_at) AS minute, metric_name, avg(metric_value) AS seconds "
                    "FROM monitoring_metrics WHERE metric_name IN ('latency_p50_seconds', 'latency_p95_seconds') "
                    "AND source = 'streaming' AND recorded_at >= now() - %s GROUP BY 1, 2 ORDER BY 1", (since,))
        return _rows(cur)


def reviewed_alert_counts(conn, since: timedelta) -> dict[str, int]:
    """Alerts reviewed in the last ``since`` per resulting status."""
    with conn.cursor() as cur:
        cur.execute("SELECT alert_status, count(*) FROM fraud_alerts WHERE reviewed_at >= now() - %s "
                    "GROUP BY alert_status", (since,))
        return {status: int(n) for status, n in cur.fetchall()}


def alerts_by_country(conn, since: timedelta, limit: int = 12) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute("SELECT country, count(*) AS alerts FROM fraud_alerts WHERE detection_time >= now() - %s "
                    "GROUP BY country ORDER BY 2 DESC, 1 LIMIT %s", (since, limit))
        return _rows(cur)


def audit_events(conn, event_types: tuple[str, ...], limit: int = 50) -> list[dict[str, Any]]:
    """Latest audit_log rows of the given event types, newest first."""
    with conn.cursor() as cur:
        cur.execute("SELECT event_type, actor, details, created_at FROM audit_log WHERE event_type = ANY(%s) "
                    "ORDER BY created_at DESC LIMIT %s", (list(event_types), limit))
        return _rows(cur)


def latest_drift(conn) -> dict[str, Any]:
    """The newest drift check (source 'drift' rows of monitoring_metrics sharing one timestamp)."""
    with conn.cursor() as cur:
        cur.execute("SELECT metric_name, metric_value, labels, recorded_at FROM monitoring_metrics "
                    "WHERE source = 'drift' AND metric_name = ANY(%s) AND recorded_at = (SELECT max(recorded_at) "
                    "FROM monitoring_metrics WHERE source = 'drift' AND metric_name = 'dataset_drift')",
                    (list(DRIFT_METRICS),))
        rows = _rows(cur)
    if not rows:
        return {}
    return {"recorded_at": rows[0]["recorded_at"], "labels": rows[0]["labels"] or {},
            "values": {r["metric_name"]: r["metric_value"] for r in rows}}
