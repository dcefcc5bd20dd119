"""Shared pieces of the streaming benchmarks: an isolated namespace, a realistic registered model,
a Kafka backlog from the live simulator, the job as a spark-submit process (with its peak
memory), and the machine's load (every number is reported next to the load average).

Nothing here runs on import. Every run uses its own topics, PostgreSQL schema, Redis key prefix,
checkpoint folder and registered model name, and removes them afterwards (the model stays in
the registry, named bench-fraud-detector-<run id>).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
BENCH_FRAUD_RATIO = 0.02


def machine_load() -> dict:
    """Load averages (1, 5, 15 min) and CPUs: the context every number needs on a shared machine."""
    one, five, fifteen = os.getloadavg()
    return {"load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2), "cpus": os.cpu_count()}


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- namespace

@dataclass(frozen=True)
class BenchNamespace:
    """Where one benchmark run reads and writes; nothing shared with other runs or tests."""

    pg_schema: str
    redis_prefix: str
    topic: str
    labels_topic: str
    alerts_topic: str
    checkpoint_dir: Path
    partitions: int

    def job_flags(self) -> list[str]:
        """The scoring job's CLI flags for this namespace."""
        return ["--checkpoint-dir", str(self.checkpoint_dir), "--pg-schema", self.pg_schema,
                "--redis-prefix", self.redis_prefix, "--topic", self.topic, "--labels-topic", self.labels_topic,
                "--alerts-topic", self.alerts_topic]


def create_namespace(settings, name: str, partitions: int, scratch: Path) -> BenchNamespace:
    """Migrated schema, topics (``partitions`` for transactions) and a checkpoint folder."""
    from fraudops.db import apply_migrations, connect
    from fraudops.kafka_io import ensure_topics

    ns = BenchNamespace(pg_schema=f"bench_{name}", redis_prefix=f"bench-{name}:", topic=f"bench-tx-{name}",
                        labels_topic=f"bench-labels-{name}", alerts_topic=f"bench-alerts-{name}",
                        checkpoint_dir=scratch / f"checkpoints-{name}", partitions=partitions)
    conn = connect(settings)
    try:
        apply_migrations(conn, ns.pg_schema)
    finally:
        conn.close()
    ensure_topics(settings, {ns.topic: partitions, ns.labels_topic: 1, ns.alerts_topic: 1})
    return ns


def drop_namespace(settings, ns: BenchNamespace) -> None:
    """Drop the schema, the topics and the Redis and feature-store keys of ``ns``."""
    from fraudops.db import connect
    from fraudops.kafka_io import delete_topics
    from fraudops.redis_client import connect_redis

    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{ns.pg_schema}" CASCADE')
    finally:
        conn.close()
    delete_topics(settings, [ns.topic, ns.labels_topic, ns.alerts_topic])
    from features.online import FeatureStoreTarget

    store = FeatureStoreTarget(settings.feature_store_host, settings.feature_store_port,
                               settings.feature_store_password).connect()
    for client in (connect_redis(settings), store):  # the alert cache, then the feature store
        try:
            keys = list(client.scan_iter(f"{ns.redis_prefix}*", count=10_000))
            for start in range(0, len(keys), 10_000):
                client.delete(*keys[start:start + 10_000])
        finally:
            client.close()


# ---------------------------------------------------------------- model

@dataclass
class BenchModel:
    """A registered Production model and what it was trained on (for in-process comparisons)."""

    name: str
    version: str
    threshold: float
    pipeline: object
    featured: object  # pandas DataFrame: the training rows with FEATURE_COLUMNS
    train_seconds: float


def register_model(settings, name: str, days: int = 20, customers: int = 2000, seed: int = 5,
                   threshold: float = 0.5) -> BenchModel:
    """Train the production-size model (HistGradientBoosting, default parameters of
    fraudops.modeling.model) on simulated history, register it and promote it to Production."""
    import mlflow

    from features.batch import compute_features
    from features.definition import CATEGORICAL_FEATURES, FEATURE_SET_VERSION, NUMERIC_FEATURES
    from fraudops.modeling.model import ModelMetadata, build_pipeline, log_fraud_model, prepare_model_input
    from fraudops.modeling.registry import (
        TAG_FEATURE_SET_VERSION,
        TAG_THRESHOLD,
        configure_tracking,
        promote_to_production,
        register_model_version,
    )
    from simulator.generator import generate_history

    configure_tracking(settings)
    history = generate_history(days=days, customers=customers, fraud_ratio=BENCH_FRAUD_RATIO, seed=seed)
    featured = compute_features(history)
    x = prepare_model_input(featured, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    started = time.perf_counter()
    pipeline = build_pipeline("hist_gradient_boosting", NUMERIC_FEATURES, CATEGORICAL_FEATURES, seed=seed)
    pipeline.fit(x, featured["is_fraud"].astype(int))
    train_seconds = time.perf_counter() - started
    metadata = ModelMetadata(decision_threshold=threshold, threshold_objective="fixed_for_benchmark",
                             feature_set_version=FEATURE_SET_VERSION, numeric_features=tuple(NUMERIC_FEATURES),
                             categorical_features=tuple(CATEGORICAL_FEATURES), model_type="hist_gradient_boosting")
    mlflow.set_experiment("bench-streaming")
    with mlflow.start_run(run_name=f"bench-{name}") as run:
        info = log_fraud_model(pipeline, metadata, x.head(5))
    version = register_model_version(info.model_uri, name, {TAG_THRESHOLD: threshold,
                                                            TAG_FEATURE_SET_VERSION: FEATURE_SET_VERSION},
                                     run_id=run.info.run_id)
    promote_to_production(name, version.version)
    return BenchModel(name, str(version.version), threshold, pipeline, featured, train_seconds)


# ---------------------------------------------------------------- Kafka input

class MessageStream:
    """Transactions from the live simulator, serialized with the message contract, taken in chunks.

    Event time starts ``days_back`` days ago (default: enough for ``expected`` messages of
    ``customers`` card holders to stay before "now + 1 day", which the validator requires).
    """

    def __init__(self, customers: int, expected: int = 200_000, seed: int = 42, days_back: float | None = None):
        from simulator.generator import LiveSimulator

        days_back = days_back if days_back is not None else expected / (customers * 2.5) + 1
        start = datetime.now(UTC) - timedelta(days=days_back)
        simulator = LiveSimulator(seed=seed, fraud_ratio=BENCH_FRAUD_RATIO, customers=customers, start=start)
        self._events = (e for e in simulator if e.kind == "transaction")

    def take(self, n: int) -> list[tuple[str, bytes]]:
        from itertools import islice

        from fraudops.contract.messages import serialize_message

        return [(event.key, serialize_message(event.message)) for event in islice(self._events, n)]


def live_messages(n: int, customers: int, seed: int = 42) -> list[tuple[str, bytes]]:
    """``n`` (key, value) pairs of ``customers`` card holders (see :class:`MessageStream`)."""
    return MessageStream(customers, expected=n, seed=seed).take(n)


def produce(settings, topic: str, messages: list[tuple[str, bytes]], rate: float = 0.0) -> dict:
    """Send pre-serialized messages (0 = as fast as possible, else ``rate`` per second, paced).

    Returns {"messages", "seconds", "messages_per_second", "started_at" (epoch seconds)}.
    """
    from fraudops.kafka_io import make_producer

    producer = make_producer(settings, **{"linger.ms": 5})
    started_at, started = time.time(), time.perf_counter()
    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
        if rate > 0:
            ahead = started + (i + 1) / rate - time.perf_counter()
            if ahead > 0.0005:
                producer.poll(0)
                time.sleep(ahead)
        elif i % 2000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.perf_counter() - started
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered to {topic}")
    return {"messages": len(messages), "seconds": round(seconds, 3),
            "messages_per_second": round(len(messages) / seconds, 1), "started_at": started_at}


# ---------------------------------------------------------------- the job as users run it

@dataclass
class JobProcess:
    """streaming/scoring_job.py under spark-submit; samples the RSS of its whole process tree."""

    argv: list[str]
    log_path: Path
    ui_port: int
    proc: subprocess.Popen | None = None
    peak_rss_bytes: int = 0
    _sampling: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, ns: BenchNamespace, model_name: str, log_path: Path, trigger_seconds: float = 0.5,
              max_offsets_per_trigger: int = 50_000, driver_memory: str = "3g",
              shuffle_partitions: int = 4, spark_conf: dict[str, str] | None = None,
              job_args: list[str] | None = None) -> JobProcess:
        """``spark_conf``: more ``--conf key=value`` for spark-submit; ``job_args``: more flags of
        the job (e.g. ``--scoring-tasks 2``); both for experiments (bench_streaming --latency-only)."""
        from fraudops.spark_session import driver_java_options, spark_kafka_jars

        jars = spark_kafka_jars()
        if not jars:
            raise RuntimeError("Spark Kafka connector jars missing: run `make setup`")
        ui_port = free_port()
        argv = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
                *driver_java_options(), "--driver-memory", driver_memory, "--conf", f"spark.sql.shuffle.partitions={shuffle_partitions}",
                "--conf", f"spark.ui.port={ui_port}",
                *[arg for key, value in (spark_conf or {}).items() for arg in ("--conf", f"{key}={value}")],
                "--jars", ",".join(jars),
                str(ROOT / "streaming" / "scoring_job.py"), *ns.job_flags(),
                "--model-uri", f"models:/{model_name}/Production", "--trigger-seconds", str(trigger_seconds),
                "--max-offsets-per-trigger", str(max_offsets_per_trigger), "--no-labels", *(job_args or [])]
        return cls(argv=argv, log_path=log_path, ui_port=ui_port)

    def start(self) -> None:
        from fraudops.spark_session import local_job_env

        env = local_job_env()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     start_new_session=True)
        log.close()
        self._sampling = True
        threading.Thread(target=self._sample_memory, daemon=True).start()

    def _sample_memory(self) -> None:
        while self._sampling and self.proc is not None and self.proc.poll() is None:
            self.peak_rss_bytes = max(self.peak_rss_bytes, session_rss_bytes(self.proc.pid))
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 120) -> int | None:
        """SIGTERM the process group (the job stops its queries), SIGKILL after ``timeout``."""
        self._sampling = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        return self.proc.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def session_rss_bytes(session_id: int) -> int:
    """Sum of the resident memory of every process in session ``session_id`` (JVM + Python workers)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
            if int(stat[3]) != session_id:  # field 6 (session) after pid and comm
                continue
            total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return total


# ---------------------------------------------------------------- PostgreSQL reads

def scalar(settings, sql: str, params=()) -> object:
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


def committed_rows(settings, ns: BenchNamespace) -> int:
    return int(scalar(settings, f'SELECT count(*) FROM "{ns.pg_schema}".transactions'))


def wait_for_rows(settings, ns: BenchNamespace, expected: int, job: JobProcess, timeout: float,
                  interval: float = 1.0) -> list[tuple[float, int]]:
    """Poll the row count until ``expected`` rows are committed; returns the (epoch, count) trace.

    Raises:
        RuntimeError: the job died, or ``timeout`` seconds passed (with the log tail).
    """
    trace: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = committed_rows(settings, ns)
        trace.append((time.time(), count))
        if count >= expected:
            return trace
        if not job.alive():
            raise RuntimeError(f"the job exited with {job.proc.returncode}:\n{job.log_tail()}")
        time.sleep(interval)
    raise RuntimeError(f"{trace[-1][1] if trace else 0} of {expected} rows after {timeout}s:\n{job.log_tail()}")


def latency_percentiles(settings, ns: BenchNamespace, since_epoch: float) -> dict:
    """Kafka timestamp -> PostgreSQL commit, per row, for rows produced after ``since_epoch``.

    ``ingested_at`` is now() of the writing transaction (its start: the COPY and INSERT that
    follow take milliseconds), ``produced_at`` the Kafka record timestamp (set by the producer).
    """
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"""SELECT count(*),
                       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
                       max(extract(epoch FROM ingested_at - produced_at))
                    FROM "{ns.pg_schema}".transactions WHERE produced_at >= to_timestamp(%s)""", (since_epoch,))
            rows, (p50, p95, p99), worst = cur.fetchone()
    finally:
        conn.close()
    return {"rows": int(rows), "p50_seconds": round(float(p50), 3), "p95_seconds": round(float(p95), 3),
            "p99_seconds": round(float(p99), 3), "max_seconds": round(float(worst), 3)}


def job_reported_latency(settings, ns: BenchNamespace, since_epoch: float) -> dict:
    """The job's own per-batch latency metrics (monitoring_metrics, source 'streaming'):
    row-weighted mean of the batch p50/p95/p99 and the worst batch p99."""
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"""WITH batches AS (
                        SELECT labels->>'batch_id' AS batch_id,
                               max(metric_value) FILTER (WHERE metric_name = 'scored_rows') AS rows,
                               max(metric_value) FILTER (WHERE metric_name = 'latency_p50_seconds') AS p50,
                               max(metric_value) FILTER (WHERE metric_name = 'latency_p95_seconds') AS p95,
                               max(metric_value) FILTER (WHERE metric_name = 'latency_p99_seconds') AS p99,
                               max(metric_value) FILTER (WHERE metric_name = 'batch_write_seconds') AS seconds
                        FROM "{ns.pg_schema}".monitoring_metrics
                        WHERE labels->>'query' = 'scoring' AND recorded_at >= to_timestamp(%s)
                        GROUP BY 1)
                    SELECT count(*), sum(rows), sum(rows * p50) / nullif(sum(rows), 0),
                           sum(rows * p95) / nullif(sum(rows), 0), sum(rows * p99) / nullif(sum(rows), 0),
                           max(p99), avg(seconds), avg(rows)
                    FROM batches WHERE rows > 0""", (since_epoch,))
            batches, rows, p50, p95, p99, worst, seconds, mean_rows = cur.fetchone()
    finally:
        conn.close()

    def rounded(value):
        return None if value is None else round(float(value), 3)

    return {"batches": int(batches or 0), "rows": int(rows or 0), "weighted_p50_seconds": rounded(p50),
            "weighted_p95_seconds": rounded(p95), "weighted_p99_seconds": rounded(p99),
            "worst_batch_p99_seconds": rounded(worst), "mean_batch_seconds": rounded(seconds),
            "mean_batch_rows": rounded(mean_rows)}


BATCH_COLUMNS = ("batch_id", "ended_s", "rows", "handler_s", "trigger_execution_ms", "add_batch_ms",
                 "latest_offset_ms", "get_batch_ms", "query_planning_ms", "wal_commit_ms", "commit_offsets_ms",
                 "handler_to_task_seconds", "task_records_seconds", "pass_seconds", "task_to_handler_seconds")


def batch_breakdown(settings, ns: BenchNamespace, since_epoch: float, until_epoch: float | None = None) -> dict:
    """Where the scoring query's micro-batches spent their time, from monitoring_metrics: the
    handler's own time (batch_write_seconds) and Spark's progress phases (durationMs, written by
    streaming.metrics' listener) per batch stored after ``since_epoch``. Returns the median, p95
    and max of each column and the batches themselves (``columns`` + ``rows``, ``ended_s`` =
    seconds after ``since_epoch`` when the handler's metrics were written)."""
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"""SELECT (labels->>'batch_id')::bigint AS batch_id,
                       extract(epoch FROM max(recorded_at) FILTER (WHERE metric_name = 'scored_rows')) - %s,
                       max(metric_value) FILTER (WHERE metric_name = 'input_rows'),
                       max(metric_value) FILTER (WHERE metric_name = 'batch_write_seconds'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_trigger_execution_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_add_batch_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_latest_offset_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_get_batch_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_query_planning_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_wal_commit_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'duration_commit_offsets_ms'),
                       max(metric_value) FILTER (WHERE metric_name = 'handler_to_task_seconds'),
                       max(metric_value) FILTER (WHERE metric_name = 'task_records_seconds'),
                       max(metric_value) FILTER (WHERE metric_name = 'pass_seconds'),
                       max(metric_value) FILTER (WHERE metric_name = 'task_to_handler_seconds')
                    FROM "{ns.pg_schema}".monitoring_metrics
                    WHERE labels->>'query' LIKE '%%scoring' AND recorded_at >= to_timestamp(%s)
                      AND recorded_at <= to_timestamp(%s)
                    GROUP BY 1 ORDER BY 1""", (since_epoch, since_epoch, until_epoch or time.time() + 3600))
            batches = [[None if v is None else round(float(v), 3) for v in row] for row in cur.fetchall()]
    finally:
        conn.close()
    batches = [b for b in batches if b[2]]  # batches with input rows
    summary = {}
    for i, name in enumerate(BATCH_COLUMNS[2:], start=2):
        values = sorted(b[i] for b in batches if b[i] is not None)
        if values:
            summary[name] = {"median": values[len(values) // 2], "p95": values[min(len(values) - 1, int(0.95 * len(values)))],
                             "max": values[-1], "mean": round(sum(values) / len(values), 3)}
    return {"batches": len(batches), "summary": summary, "columns": list(BATCH_COLUMNS), "rows": batches}
