"""foreachBatch handlers of the scoring job: scoring (with quarantine and every sink), labels.

Each handler runs on the driver once per micro-batch; the heavy work (parsing, features,
scoring, writing) runs on the executors in one mapInPandas pass. A handler that raises fails the
micro-batch: the query stops with the error and restarts from its checkpoint
(streaming.scoring_job supervises it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime

import pandas as pd

from features.online import FeatureStoreTarget
from fraudops.contract.messages import validate_label_message
from streaming import prometheus
from streaming.metrics import (
    REDIS_GAP_CLOSED,
    REDIS_GAP_STARTED,
    latency_summary,
    open_redis_gap,
    record_audit,
    record_metrics,
)
from streaming.scoring_pass import (
    BATCH_STATS_DDL,
    KAFKA_COLUMNS,
    PassInputs,
    scoring_pass,
    stats_summary,
    warm_up,
)
from streaming.sinks import SinkTargets, pg_connect, resync_redis_alerts, upsert_labels

log = logging.getLogger("streaming.batch_handlers")


class MetricsWriter:
    """The scoring handler's per-batch metrics, written to PostgreSQL by a background thread in
    the order of the batches: the next micro-batch does not wait for them (~20-30 ms a batch
    with ~15 metrics). A failed write is retried (every ``retry_seconds``, its batch's rows
    committed in one transaction, so none is written twice); :meth:`close` writes what is
    queued (waits up to ``close_timeout`` seconds) and logs what it could not write."""

    def __init__(self, connect, retry_seconds: float = 1.0, close_timeout: float = 10.0):
        self._connect, self.retry_seconds, self.close_timeout = connect, retry_seconds, close_timeout
        self._queue: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn = None

    def put(self, values: dict[str, float], labels: dict) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="scoring-metrics-writer", daemon=True)
                self._thread.start()
        self._queue.put((values, labels))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued batch's metrics are written; False when ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        if not self.flush(self.close_timeout):
            log.error("%d micro-batch(es) of metrics not written to PostgreSQL", self._queue.unfinished_tasks)
        self._closing.set()
        self._drop()

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                values, labels = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            while True:
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                    record_metrics(self._conn, values, labels)
                    break
                except Exception as exc:  # noqa: BLE001 - PostgreSQL down: the batch's rows are retried
                    log.warning("metrics of batch %s not written yet (%s), retrying", labels.get("batch_id"),
                                str(exc).splitlines()[0] if str(exc) else exc)
                    self._drop()
                    if self._closing.wait(self.retry_seconds):
                        return
            self._queue.task_done()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
        self._conn = None


def scoring_write_options() -> dict[str, str]:
    """writeStream options of the scoring query: asynchronous progress tracking, i.e. the
    offset and commit logs written by a background thread (at most once a second) instead of
    twice on every micro-batch's path (bench_streaming --latency-only at 2,000 tx/s: walCommit
    ~75 ms + commitOffsets ~60 ms per batch -> ~1 ms).

    Spark rejects it for foreachBatch sinks unless its sink check is overridden, because after
    a crash it replays every batch since the last offsets it persisted, possibly cut
    differently: this sink is idempotent for exactly that (rows keyed by transaction_id with
    ON CONFLICT DO NOTHING, feature-store members keyed by transaction_id, features from
    strictly earlier events), as a replay after a lost checkpoint already is. The query is
    stateless, which async progress tracking requires."""
    return {"asyncProgressTrackingEnabled": "true", "_asyncProgressTrackingOverrideSinkSupportCheck": "true"}


class ScoringBatchWriter:
    """foreachBatch handler of the scoring query: ONE pandas pass over the micro-batch's Kafka
    records (streaming.scoring_pass), then the batch's metrics and the Redis gap bookkeeping.

    ``tasks`` = 1 runs the pass as one task (coalesce: no shuffle); more spread the users over
    that many tasks by a hash of user_id (one shuffle). Either way all events of a user in a
    micro-batch are in one task, which the as-of features need.
    """

    KEEP_WARM_SECONDS = 20.0  # Spark ends Python workers idle for a minute: touch one before

    def __init__(self, model_server, merchant_risk, targets: SinkTargets, store: FeatureStoreTarget,
                 tracking_uri: str, tasks: int = 1, spark=None):
        self.spark = spark
        self.model_server = model_server
        self.merchant_risk = merchant_risk
        self.targets = targets
        self.store = store
        self.tracking_uri = tracking_uri
        self.tasks = tasks
        self.decisions_topic: str | None = None  # the decision service's topic, read beside the transactions
        self.rules_reload_seconds = 5.0  # how often the workers check for published rules (RULES_RELOAD_SECONDS)
        self.redis_gap_since: datetime | None = None  # first alert Redis missed, if any
        self._gap_restored = False  # read an unclosed gap of an earlier run from audit_log once
        self._conn = None  # the driver's PostgreSQL connection for the Redis gap, reused across batches
        self.metrics = MetricsWriter(lambda: pg_connect(self.targets))  # off the batch path
        self._last_batch = time.monotonic()
        self._stop = threading.Event()

    def inputs(self) -> PassInputs:
        return PassInputs(targets=self.targets, store=self.store, served=self.model_server.served,
                          tracking_uri=self.tracking_uri, merchant_risk=self.merchant_risk.current,
                          challenger=getattr(self.model_server, "challenger", None),
                          decisions_topic=self.decisions_topic,
                          rules_reload_seconds=self.rules_reload_seconds)

    def keep_warm(self) -> None:
        """A daemon thread: a one-row job that loads the model and opens the connections in a
        Python worker right away (while the query starts), then whenever no micro-batch ran for
        KEEP_WARM_SECONDS, so a batch after a start or a quiet spell finds the worker warm."""

        def loop():
            while True:
                try:
                    self.spark.range(1, numPartitions=1).mapInPandas(warm_up(self.inputs()), "rows long").collect()
                except Exception as exc:  # noqa: BLE001 - only a warm-up; the batches report real failures
                    log.warning("worker warm-up failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
                while not self._stop.wait(self.KEEP_WARM_SECONDS / 4):
                    if time.monotonic() - self._last_batch > self.KEEP_WARM_SECONDS:
                        self._last_batch = time.monotonic()
                        break
                else:
                    return

        threading.Thread(target=loop, name="python-worker-keep-warm", daemon=True).start()

    def plan(self, batch_df):
        """The micro-batch's Kafka records, laid out for the pass (see the class docstring)."""
        from pyspark.sql import functions as F

        records = batch_df.select(*KAFKA_COLUMNS)
        if self.tasks == 1:
            return records.coalesce(1)
        return records.repartition(self.tasks, F.get_json_object(F.col("value").cast("string"), "$.user_id"))

    def __call__(self, batch_df, batch_id: int) -> None:
        started = datetime.now(UTC)
        inputs = self.inputs()
        try:
            rows = self.plan(batch_df).mapInPandas(timed_pass(inputs), TIMED_STATS_DDL).collect()
        finally:
            self._last_batch = time.monotonic()
        self._after_write(batch_id, started, inputs.served, stats_summary(rows), task_times(rows))

    def _after_write(self, batch_id, started, served, stats: dict, times: dict | None = None) -> None:
        duration = (datetime.now(UTC) - started).total_seconds()
        values = {"scored_rows": stats["rows"], "alerts": stats["alerts"],
                  "redis_alerts_missed": stats["redis_missed"], "quarantined_rows": stats["quarantined"],
                  "batch_write_seconds": duration, "model_version": float(served.version),
                  **latency_summary(stats["latencies"]), **handler_phases(started.timestamp(), times)}
        self.metrics.put(values, {"query": "scoring", "batch_id": batch_id, "model_version": served.version})
        prometheus.observe_scoring_batch(stats, duration, served.version)
        try:
            self._track_redis_gap(self._connection(), stats["redis_missed"], started)
        except Exception:
            self._stop.set()  # the query fails: the job stops this writer (its metrics too) and restarts
            self._close_connection()
            raise
        context = {"batch_id": batch_id, "query": "scoring", "model_version": served.version}
        if stats["rows"] or stats["quarantined"]:
            log.info("batch %s: %d scored, %d alerts, %d quarantined, version %s, %.2fs", batch_id,
                     stats["rows"], stats["alerts"], stats["quarantined"], served.version, duration, extra=context)
        if stats["quarantined"]:
            log.warning("batch %s: %d message(s) quarantined (%s)", batch_id, stats["quarantined"],
                        ", ".join(f"{k} {v}" for k, v in sorted(stats.get("quarantine_reasons", {}).items())),
                        extra=context)

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = pg_connect(self.targets)
        return self._conn

    def stop(self) -> None:
        """End the keep-warm thread; write the metrics still queued; close the driver's connection."""
        self._stop.set()
        self.metrics.close()
        self._close_connection()

    def _close_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
            self._conn = None

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


# the pass's statistics plus when its task started, got its first Kafka records and ended
TIMED_STATS_DDL = BATCH_STATS_DDL + ", task_started double, records_arrived double, task_ended double"


def timed_pass(inputs: PassInputs):
    """streaming.scoring_pass's mapInPandas function, its statistics rows stamped with the task's
    start, the arrival of its first records and its end (epoch seconds): where a handler's
    time goes besides the pass (see handler_phases)."""
    run_pass = scoring_pass(inputs)

    def run(chunks):
        task_started, arrived = time.time(), []

        def watched():
            for chunk in chunks:
                if not arrived:
                    arrived.append(time.time())
                yield chunk

        for stats in run_pass(watched()):
            yield stats.assign(task_started=task_started, records_arrived=arrived[0] if arrived else task_started,
                               task_ended=time.time())

    return run


def task_times(rows: list) -> dict | None:
    """First start, first records and last end of the pass's tasks (None without a stats row)."""
    if not rows:
        return None
    return {"task_started": min(r["task_started"] for r in rows),
            "records_arrived": min(r["records_arrived"] for r in rows),
            "task_ended": max(r["task_ended"] for r in rows)}


def handler_phases(started: float, times: dict | None) -> dict[str, float]:
    """Where the handler's time went (seconds): Spark's job and task start until the Python
    task runs (``handler_to_task_seconds``), the Kafka records' read and Arrow transfer until
    the first chunk arrives (``task_records_seconds``), the pass itself (``pass_seconds``) and
    the statistics back to the driver (``task_to_handler_seconds``)."""
    if times is None:
        return {}
    return {"handler_to_task_seconds": times["task_started"] - started,
            "task_records_seconds": times["records_arrived"] - times["task_started"],
            "pass_seconds": times["task_ended"] - times["records_arrived"],
            "task_to_handler_seconds": time.time() - times["task_ended"]}


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
    # THE label contract (duplicate keys included) lives in fraudops.contract.messages
    return validate_label_message(None if value is None else bytes(value))


class LabelsBatchWriter:
    """Upsert labels from the transaction-labels topic; malformed ones go to quarantine."""

    def __init__(self, targets: SinkTargets):
        self.targets = targets

    def __call__(self, batch_df, batch_id: int) -> None:
        from fraudops.contract.tables import QUARANTINE_INSERT_COLUMNS
        from streaming.sinks import copy_upsert

        started = time.monotonic()
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
        reasons = rejected["reason"].tolist() if len(rejected) else []
        prometheus.observe_labels_batch(len(labels), reasons, time.monotonic() - started)
        if reasons:
            log.warning("labels batch %s: %d label message(s) quarantined", batch_id, len(reasons),
                        extra={"batch_id": batch_id, "query": "labels"})
