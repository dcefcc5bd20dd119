"""Column layouts of the PostgreSQL tables that the application writes (written once).

The DDL lives in fraudops/contract/migrations/; these lists name the columns each writer fills, in order.
"""

from __future__ import annotations

# raw message fields, then scoring results, then provenance
TRANSACTION_INSERT_COLUMNS: list[str] = [
    "transaction_id", "user_id", "amount", "currency", "merchant", "merchant_id",
    "merchant_category", "transaction_time", "country", "transaction_type", "channel", "device_id",
    "fraud_score", "is_fraud", "decision_threshold", "model_version", "feature_set_version",
    "features", "kafka_partition", "kafka_offset", "produced_at", "scored_at",
    # the decision service's answer (migration 0006); NULL for rows the stream alone scored
    *(DECISION_ROW_COLUMNS := ["decision", "decline_threshold", "decided_at", "decision_degraded",
                               "degraded_reason", "rules_fired"]),
]

ALERT_INSERT_COLUMNS: list[str] = [
    "transaction_id", "user_id", "amount", "currency", "merchant", "country", "transaction_time",
    "fraud_score", "model_version", "detection_time", "reasons", "decision", "rules_fired",
]

QUARANTINE_INSERT_COLUMNS: list[str] = [
    "reason", "raw_value", "raw_size_bytes", "kafka_topic", "kafka_partition", "kafka_offset",
    "kafka_timestamp",
]

LABEL_INSERT_COLUMNS: list[str] = ["transaction_id", "is_fraud", "source", "labeled_at"]

# a challenger's shadow score per transaction (never alerts; migration 0005)
SHADOW_SCORE_INSERT_COLUMNS: list[str] = [
    "transaction_id", "model_version", "fraud_score", "would_alert", "threshold", "scored_at",
]

DECISIONS = ("approve", "review", "decline")

ALERT_STATUSES = ("pending", "confirmed", "false_positive")
LABEL_SOURCES = ("chargeback", "analyst", "simulator", "import")

# Redis keys of the alert sink (the seed's `GET fraud_alert:TXN_...` works)
REDIS_ALERT_KEY = "fraud_alert:{transaction_id}"
REDIS_RECENT_ALERTS_KEY = "recent_fraud_alerts"
