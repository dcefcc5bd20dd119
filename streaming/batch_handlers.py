"""foreachBatch handlers of the scoring job: scoring + sinks, quarantine, labels.

Each handler runs on the driver once per micro-batch; the heavy work (scoring, writing) runs on
the executors through mapInPandas. A handler that raises fails the micro-batch: the query stops
with the error and restarts from its checkpoint (streaming.scoring_job supervises it).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from features.spark_columns import attach_merchant_risk
from fraudops.contract.tables import LABEL_SOURCES, TRANSACTION_INSERT_COLUMNS
from streaming.metrics import (
    REDIS_GAP_CLOSED,
    REDIS_GAP_STARTED,
    latency_summary,
    open_redis_gap,
    record_audit,
    record_metrics,
)
from streaming.sinks import (
    WRITE_STATS_DDL,
    SinkTargets,
    pg_connect,
    quarantine_writer,
    resync_redis_alerts,
    scored_rows_writer,
    upsert_labels,
)

log = logging.getLogger("streaming.batch_handlers")


class ScoringBatchWriter:
    """Score a micro-batch of featured transactions and write it to every sink."""

    def __init__(self, model_server, merchant_risk, targets: SinkTargets):
        self.model_server = model_server
        self.merchant_risk = merchant_risk
        self.targets = targets
        self.redis_gap_since: datetime | None = None  # first alert Redis missed, if any
        self._gap_restored = False  # read an unclosed gap of an earlier run from audit_log once

    def __call__(self, batch_df, batch_id: int) -> None:
        started = datetime.now(UTC)
        self.model_server.refresh()
        scored = self.model_server.score(attach_merchant_risk(batch_df, self.merchant_risk.snapshot()))
        scored = scored.withColumn("scored_at", _now_column())
        stats = (
            scored.select(*TRANSACTION_INSERT_COLUMNS)
            .mapInPandas(scored_rows_writer(self.targets), WRITE_STATS_DDL)
            .collect()
        )
        rows = sum(s["rows"] for s in stats)
        alerts = sum(s["alerts"] for s in stats)
        missed = sum(s["redis_missed"] for s in stats)
        latencies = np.concatenate([np.asarray(s["latencies"], dtype="float64") for s in stats]) if stats else np.array([])
        self._after_write(batch_id, started, rows, alerts, missed, latencies)

    def _after_write(self, batch_id, started, rows, alerts, missed, latencies) -> None:
        duration = (datetime.now(UTC) - started).total_seconds()
        served = self.model_server.current.served
        values = {"scored_rows": rows, "alerts": alerts, "redis_alerts_missed": missed,
                  "batch_write_seconds": duration, "model_version": float(served.version),
                  **latency_summary(latencies)}
        conn = pg_connect(self.targets)
        try:
            record_metrics(conn, values, {"query": "scoring", "batch_id": batch_id,
                                          "model_version": served.version})
            self._track_redis_gap(conn, missed, started)
        finally:
            conn.close()
        if rows:
            log.info("batch %s: %d scored, %d alerts, version %s, %.2fs", batch_id, rows, alerts,
                     served.version, duration)

    def _track_redis_gap(self, conn, missed: int, started: datetime) -> None:
        """Report alerts Redis missed, and copy them over from PostgreSQL once it is back.

        The gap is recorded in audit_log, so a job restarted during an outage still resyncs it.
        """
        if not self._gap_restored:
            self.redis_gap_since = self.redis_gap_since or open_redis_gap(conn)
            self._gap_restored = True
        if missed and self.redis_gap_since is None:
            self.redis_gap_since = started
            record_audit(conn, REDIS_GAP_STARTED, {"missed_alerts": missed, "since": started.isoformat()})
            log.warning("Redis unreachable: %d alerts kept in PostgreSQL only, will resync", missed)
        elif not missed and self.redis_gap_since is not None:
            still_missing = resync_redis_alerts(conn, self.targets, self.redis_gap_since)
            if not still_missing:
                record_audit(conn, REDIS_GAP_CLOSED, {"since": self.redis_gap_since.isoformat()})
                log.info("Redis back: alerts since %s copied from PostgreSQL", self.redis_gap_since)
                self.redis_gap_since = None


def _now_column():
    from pyspark.sql import functions as F

    return F.current_timestamp()


class QuarantineBatchWriter:
    """Write rejected messages (reason, raw value cut to a bound, topic/partition/offset)."""

    def __init__(self, targets: SinkTargets):
        self.targets = targets

    def __call__(self, batch_df, batch_id: int) -> None:
        from pyspark.sql import functions as F

        rows = (
            batch_df.select(
                F.col("reject_reason").alias("reason"), "raw_value", "raw_size_bytes", "kafka_topic",
                "kafka_partition", "kafka_offset", F.col("produced_at").alias("kafka_timestamp"))
            .mapInPandas(quarantine_writer(self.targets), "rows long")
            .collect()
        )
        count = sum(r["rows"] for r in rows)
        if count:
            conn = pg_connect(self.targets)
            try:
                record_metrics(conn, {"quarantined_rows": count}, {"query": "quarantine", "batch_id": batch_id})
            finally:
                conn.close()
            log.warning("batch %s: %d message(s) quarantined", batch_id, count)





def parse_label_messages(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split Kafka label messages into (labels, rejected with reasons)."""
    good, bad = [], []
    for row in frame.itertuples(index=False):
        label, reason = _parse_label(row.value)
        meta = {"kafka_topic": row.topic, "kafka_partition": row.partition, "kafka_offset": row.offset,
                "kafka_timestamp": row.timestamp}
        if reason is None:
            good.append(label)
        else:
            raw = None if row.value is None else bytes(row.value)[:4096].decode("utf-8", "replace")
            bad.append({"reason": reason, "raw_value": raw, "raw_size_bytes": len(row.value or b""), **meta})
    return pd.DataFrame(good, columns=["transaction_id", "is_fraud", "source", "labeled_at"]), pd.DataFrame(bad)


def _parse_label(value) -> tuple[dict | None, str | None]:
    try:
        obj = json.loads(bytes(value).decode("utf-8"))
    except (TypeError, ValueError, UnicodeDecodeError):
        return None, "label:not_json"
    if not isinstance(obj, dict):
        return None, "label:not_an_object"
    tid, is_fraud, source = obj.get("transaction_id"), obj.get("is_fraud"), obj.get("source", "chargeback")
    if not isinstance(tid, str) or not tid or len(tid) > 128:
        return None, "label:bad_transaction_id"
    if not isinstance(is_fraud, bool) and is_fraud not in (0, 1):
        return None, "label:bad_is_fraud"
    if source not in LABEL_SOURCES:
        return None, f"label:bad_source:{str(source)[:32]}"
    try:
        labeled_at = pd.Timestamp(obj.get("labeled_at") or datetime.now(UTC))
        labeled_at = labeled_at.tz_localize("UTC") if labeled_at.tzinfo is None else labeled_at.tz_convert("UTC")
    except (TypeError, ValueError):
        return None, "label:unparseable_labeled_at"
    return {"transaction_id": tid, "is_fraud": bool(is_fraud), "source": source, "labeled_at": labeled_at}, None


class LabelsBatchWriter:
    """Upsert labels from the transaction-labels topic; malformed ones go to quarantine."""

    def __init__(self, targets: SinkTargets):
        self.targets = targets

    def __call__(self, batch_df, batch_id: int) -> None:
        from fraudops.contract.tables import QUARANTINE_INSERT_COLUMNS
        from streaming.sinks import copy_upsert

        frame = batch_df.toPandas()  # labels are few: one small frame on the driver
        if frame.empty:
            return
        labels, rejected = parse_label_messages(frame)
        conn = pg_connect(self.targets)
        try:
            upsert_labels(conn, labels.drop_duplicates(["transaction_id", "source"], keep="last"))
            if len(rejected):
                with conn.cursor() as cur:
                    copy_upsert(cur, "quarantine", rejected, QUARANTINE_INSERT_COLUMNS,
                                "(kafka_topic, kafka_partition, kafka_offset) DO NOTHING")
                conn.commit()
            record_metrics(conn, {"labels_received": len(labels), "labels_rejected": len(rejected)},
                           {"query": "labels", "batch_id": batch_id})
        finally:
            conn.close()
