"""Per-micro-batch metrics of the scoring job, stored in monitoring_metrics (source 'streaming').

Two writers: the scoring batch handler records what only it knows (end-to-end latency from the
Kafka timestamp to the PostgreSQL commit, alerts, Redis gaps, the model version), and a
StreamingQueryListener records Spark's progress (input rows, rows/s, batch duration).
"""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import datetime

import numpy as np

from fraudops.records import MetricRow, insert_audit, insert_metric_rows

log = logging.getLogger("streaming.metrics")
SOURCE = "streaming"


def latency_summary(latencies: np.ndarray) -> dict[str, float]:
    """p50/p95/p99/max of end-to-end latencies in seconds (empty input gives no keys)."""
    if latencies.size == 0:
        return {}
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"latency_p50_seconds": float(p50), "latency_p95_seconds": float(p95),
            "latency_p99_seconds": float(p99), "latency_max_seconds": float(latencies.max())}


def record_metrics(conn, values: dict[str, float], labels: dict) -> None:
    """Insert and commit one monitoring_metrics row per value (same labels, same timestamp)."""
    insert_metric_rows(conn, SOURCE, [MetricRow(name, value, labels) for name, value in values.items()])
    conn.commit()


def record_audit(conn, event_type: str, details: dict, actor: str = "streaming-job") -> None:
    insert_audit(conn, event_type, actor, details)
    conn.commit()


REDIS_GAP_STARTED = "redis_gap_started"
REDIS_GAP_CLOSED = "redis_gap_closed"


def open_redis_gap(conn) -> datetime | None:
    """Start of a Redis gap that audit_log reports as not closed (a job restart must not forget it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT event_type, details->>'since' FROM audit_log WHERE event_type IN (%s, %s) "
                    "ORDER BY audit_id DESC LIMIT 1", (REDIS_GAP_STARTED, REDIS_GAP_CLOSED))
        row = cur.fetchone()
    conn.rollback()
    if not row or row[0] != REDIS_GAP_STARTED or not row[1]:
        return None
    return datetime.fromisoformat(row[1])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def progress_values(progress) -> dict[str, float]:
    """The metrics of one StreamingQueryProgress: rows, rates, the batch's duration and where it
    went (``duration_<phase>_ms`` for each of Spark's durationMs phases: latest_offset,
    get_batch, query_planning, wal_commit, add_batch, commit_offsets, trigger_execution...)."""
    values = {
        "input_rows": progress.numInputRows,
        "input_rows_per_second": progress.inputRowsPerSecond or 0.0,
        "processed_rows_per_second": progress.processedRowsPerSecond or 0.0,
        "batch_duration_ms": float(progress.batchDuration),
    }
    for phase, millis in (progress.durationMs or {}).items():
        values[f"duration_{_snake(phase)}_ms"] = float(millis)
    return values


def progress_listener(connect):
    """A StreamingQueryListener writing each progress report; ``connect()`` opens a DB connection
    (one, kept open across reports and reopened after an error)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class ProgressToPostgres(StreamingQueryListener):
        conn = None

        def onQueryStarted(self, event):
            pass

        def onQueryProgress(self, event):
            progress = event.progress
            values = progress_values(progress)
            labels = {"query": progress.name, "batch_id": progress.batchId}
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = connect()
                record_metrics(self.conn, values, labels)
            except Exception as exc:  # noqa: BLE001 - metrics must never stop scoring
                log.warning("could not record progress of %s: %s", progress.name, exc)
                self._drop()

        def _drop(self):
            if self.conn is not None:
                with contextlib.suppress(Exception):  # closing a broken connection
                    self.conn.close()
            self.conn = None

        def onQueryIdle(self, event):
            pass

        def onQueryTerminated(self, event):
            if event.exception:
                log.error("query %s terminated: %s", event.id, str(event.exception).splitlines()[0])

    return ProgressToPostgres()
