"""The Spark Structured Streaming scoring job.

Reads:  Kafka topic KAFKA_TOPIC (banking-transactions; earliest offsets on a first start) and
        KAFKA_LABELS_TOPIC (transaction-labels); the Production model from the MLflow registry
        (MODEL_URI); labels in PostgreSQL for the merchant risk snapshot; the online feature
        store (FEATURE_STORE_HOST/PORT/PASSWORD, a Redis instance of its own).
Writes: PostgreSQL transactions, fraud_alerts, quarantine, labels, monitoring_metrics,
        audit_log; the feature store (each user's recent events); Redis (REDIS_*)
        fraud_alert:<transaction_id> and recent_fraud_alerts; Kafka KAFKA_ALERTS_TOPIC
        (fraud-alerts). Checkpoints under --checkpoint-dir. Serves its own Prometheus metrics
        (streaming.prometheus) on the driver's --metrics-port (STREAMING_METRICS_PORT, 9109).

Two queries share one Spark application:
  scoring  Kafka records, read ONCE per micro-batch -> one pandas pass (streaming.scoring_pass):
           parse + validate (rejected rows to quarantine from the same batch), per-user
           features as of each event from the feature store (only the batch's users are read),
           merchant risk from a broadcast snapshot, the served registry pyfunc (loaded once per
           Python worker), then the feature store, PostgreSQL, Redis alerts and the alerts
           topic with per-worker connections. Effectively once: checkpointed offsets +
           idempotent writes. The registry poll and the merchant snapshot refresh run in
           background threads of the driver, never on the batch path.
  labels   transaction-labels -> labels table

Start-up (and restart after a crash; each milestone is logged as ``start-up: <what> at +<s>s``
since spark-submit, see bench/STARTUP.md): the registry look-up and the job's imports run in a
thread while the JVM builds the Spark session; the executors' Python daemon is
streaming.worker_daemon, which imports pandas, scikit-learn, MLflow and loads the served
version once before it forks workers (a one-row keep-warm job starts it as soon as the version
is known); in local mode the driver starts that work at its first line in a warm daemon
(streaming.worker_zygote) which the JVM's daemon hands its pipes to (FRAUDOPS_WORKER_PREWARM=0:
off); the merchant snapshot is read while the queries start, and the first micro-batch
waits for it. The checkpoint keeps the offsets, so a restart repeats nothing else.

Run (local stack):
    make stream
or directly:
    spark-submit --master 'local[2]' \
      --jars $(ls .cache/jars/spark-kafka/*.jar | paste -sd,) streaming/scoring_job.py
On a cluster: the same line with --master spark://host:7077 and KAFKA_BROKERS etc. exported.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file by spark-submit: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fraudops.settings import Settings, load_settings

log = logging.getLogger("streaming.scoring_job")


def _process_start(pid: int) -> float | None:
    """Epoch seconds when process ``pid`` started (Linux /proc), None elsewhere."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


# spark-submit's JVM starts the driver's Python: its start time is the job's start
_SUBMITTED_AT = _process_start(os.getppid()) or time.time()


def phase(name: str) -> None:
    """Log a start-up milestone with the seconds since spark-submit started (the start-up profile)."""
    log.info("start-up: %s at +%.1fs", name, time.time() - _SUBMITTED_AT)
# the scoring query's checkpoint folder; the former stateful query's "scoring" cannot be resumed
SCORING_CHECKPOINT = "scoring-pass"


@dataclass
class JobOptions:
    """Everything the job needs besides the settings (each has a CLI flag)."""

    checkpoint_dir: Path
    trigger_seconds: float = 0.5
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = 50_000
    pg_schema: str = "public"
    redis_prefix: str = ""
    topic: str | None = None
    labels_topic: str | None = None
    decisions_topic: str | None = None  # decided transactions (decisions/); None: none (the CLI reads KAFKA_DECISIONS_TOPIC)
    alerts_topic: str | None = None
    model_uri: str | None = None
    model_refresh_seconds: float = 10.0
    merchant_refresh_seconds: float = 60.0
    label_delay_seconds: float = 3600.0  # when a label becomes usable for the merchant features
    with_labels: bool = True
    query_prefix: str = ""
    scoring_tasks: int = 2
    metrics_port: int = 0  # the driver's Prometheus /metrics (streaming.prometheus); 0: none
    metrics_host: str = "127.0.0.1"


def sink_targets(settings: Settings, options: JobOptions):
    from streaming.sinks import SinkTargets

    return SinkTargets(
        postgres_dsn=settings.postgres_dsn, pg_schema=options.pg_schema,
        redis_host=settings.redis_host, redis_port=settings.redis_port,
        redis_password=settings.redis_password, redis_prefix=options.redis_prefix,
        kafka_brokers=settings.kafka_brokers,
        alerts_topic=options.alerts_topic or settings.kafka_alerts_topic,
    )


def feature_store_target(settings: Settings, options: JobOptions):
    from features.online import FeatureStoreTarget

    return FeatureStoreTarget(host=settings.feature_store_host, port=settings.feature_store_port,
                              password=settings.feature_store_password, prefix=options.redis_prefix)


def kafka_stream(spark, settings: Settings, topic: str, options: JobOptions):
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_brokers)
        .option("subscribe", topic)
        .option("startingOffsets", options.starting_offsets)
        .option("maxOffsetsPerTrigger", str(options.max_offsets_per_trigger))
        .option("failOnDataLoss", "false")
        # the consumer's prefetch of records not yet produced otherwise waits the broker's
        # default 500 ms, which the next micro-batch's fetch queues behind (bench_streaming
        # --latency-only: task_records_seconds 0.51 -> ~0.01 s for a single-row batch)
        .option("kafka.fetch.max.wait.ms", "10")
        .load()
    )


@dataclass
class RunningJob:
    """The job's queries and its progress listener; :meth:`stop` stops both."""

    spark: object
    queries: list
    listener: object
    background: list  # driver threads' owners (registry poll, merchant snapshot), each with stop()

    def process_all_available(self) -> None:
        for query in self.queries:
            query.processAllAvailable()

    def stop(self) -> None:
        for query in self.queries:
            if query.isActive:
                query.stop()
        for owner in self.background:
            owner.stop()
        self.spark.streams.removeListener(self.listener)

    def failures(self) -> list:
        return [q for q in self.queries if not q.isActive and q.exception()]


# the Python daemon of the job's executors: imports and the served model before it forks workers
WORKER_DAEMON = "streaming.worker_daemon"
FIRST_SNAPSHOT_TIMEOUT_SECONDS = 600.0


def model_server(settings: Settings, options: JobOptions):
    from streaming.model_server import ModelServer

    return ModelServer(options.model_uri or settings.model_uri, settings,
                       refresh_seconds=options.model_refresh_seconds,
                       audit=_auditor(sink_targets(settings, options)))


class EarlyStart:
    """The driver's start-up work that needs no Spark, run in a thread while the Spark session
    starts (the JVM works in its own process meanwhile): the job's imports (pandas, MLflow,
    the sinks) and the registry's answer for MODEL_URI (:class:`ModelServer` started)."""

    def __init__(self, settings: Settings, options: JobOptions, zygote=None):
        self.settings, self.options, self.zygote = settings, options, zygote
        self._model = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="early-start", daemon=True)

    def begin(self) -> EarlyStart:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:  # the job's imports now, while the JVM starts the Spark session
            import streaming.batch_handlers
            import streaming.merchant_risk
            import streaming.metrics  # noqa: F401

            model = model_server(self.settings, self.options)
            model.start()
            self._model = model
            if self.zygote is not None:  # the warm daemon loads it while the session starts
                self.zygote.name_model(model.served.model_uri, self.settings.mlflow_tracking_uri)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread by model_server()
            self._error = exc

    def model_server(self):
        """The started ModelServer; raises what the early start raised (ModelUnavailableError...)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._model


def start_queries(spark, settings: Settings, options: JobOptions, model=None, zygote=None) -> RunningJob:
    """Start the scoring and (optionally) labels queries. ``model``: a ModelServer already
    started (see :class:`EarlyStart`); None: resolve MODEL_URI now. ``zygote``: the warm Python
    daemon the driver started (streaming.worker_zygote), or None."""
    from fraudops.modeling.registry import label_delay_mismatch
    from streaming.batch_handlers import LabelsBatchWriter, ScoringBatchWriter, scoring_write_options
    from streaming.merchant_risk import MerchantRiskCache
    from streaming.metrics import progress_listener
    from streaming.sinks import pg_connect

    targets = sink_targets(settings, options)
    if model is None:
        model = model_server(settings, options)
        model.start()
    served = model.served
    phase("registry resolved")
    log.info("scoring with %s version %s (threshold %.4f)", served.name, served.version, served.threshold)
    if mismatch := label_delay_mismatch(options.label_delay_seconds, served):
        log.warning(mismatch)
    _preload_in_workers(spark, served.model_uri, settings.mlflow_tracking_uri, zygote)
    merchant_risk = MerchantRiskCache(spark, targets, refresh_seconds=options.merchant_refresh_seconds,
                                      label_delay=options.label_delay_seconds)
    scoring = ScoringBatchWriter(model, merchant_risk, targets, feature_store_target(settings, options),
                                 settings.mlflow_tracking_uri, tasks=options.scoring_tasks, spark=spark)
    scoring.keep_warm()  # the Python daemon starts (imports, model) and a worker opens its connections
    # the first snapshot is read while the queries start; the first micro-batch waits for it (a
    # failed read fails that batch: the supervisor restarts from the checkpoints, PostgreSQL down)
    merchant_risk.start(wait=False)
    listener = progress_listener(lambda: pg_connect(targets))
    spark.streams.addListener(listener)

    topic = options.topic or settings.kafka_topic
    decisions_topic = options.decisions_topic or None
    scoring.decisions_topic = decisions_topic
    scoring.rules_reload_seconds = float(settings.rules_reload_seconds)
    subscribed = ",".join(t for t in (topic, decisions_topic) if t)
    trigger = {"processingTime": f"{options.trigger_seconds} seconds"}
    checkpoints = options.checkpoint_dir
    queries = []
    try:
        queries.append(
            kafka_stream(spark, settings, subscribed, options).writeStream.queryName(f"{options.query_prefix}scoring")
            .foreachBatch(_FirstBatch(scoring, merchant_risk))
            .option("checkpointLocation", str(checkpoints / SCORING_CHECKPOINT)).options(**scoring_write_options())
            .trigger(**trigger).start())
        if options.with_labels:
            labels_topic = options.labels_topic or settings.kafka_labels_topic
            queries.append(
                kafka_stream(spark, settings, labels_topic, options).select("value", "topic", "partition", "offset", "timestamp")
                .writeStream.queryName(f"{options.query_prefix}labels").foreachBatch(LabelsBatchWriter(targets))
                .option("checkpointLocation", str(checkpoints / "labels")).trigger(**trigger).start()
            )
    except Exception:
        RunningJob(spark, queries, listener, [model, merchant_risk, scoring]).stop()
        raise
    phase("queries started")
    return RunningJob(spark, queries, listener, [model, merchant_risk, scoring])


def _preload_in_workers(spark, model_uri: str, tracking_uri: str, zygote=None) -> bool:
    """Name the served version to the job's Python daemon (streaming.worker_daemon), which loads
    it before forking workers. Only when the session runs that daemon (returns whether it
    does), and only once: the daemon is chosen by the workers' environment, so a changed value
    would start another."""
    context = spark.sparkContext
    if context.getConf().get("spark.python.daemon.module", "") != WORKER_DAEMON:
        return False
    from streaming.worker_daemon import PRELOAD_MODEL_ENV, PRELOAD_TRACKING_ENV

    context.environment.setdefault(PRELOAD_MODEL_ENV, model_uri)
    context.environment.setdefault(PRELOAD_TRACKING_ENV, tracking_uri)
    for key, value in (zygote.worker_env() if zygote is not None else {}).items():
        context.environment.setdefault(key, value)  # the JVM's daemon hands over to the warm one
    return True


class _FirstBatch:
    """The scoring handler; before the first micro-batch, waits for the first merchant snapshot
    (read while the queries started) and logs the first batch's start and end as start-up phases."""

    def __init__(self, handler, merchant_risk):
        self.handler, self.merchant_risk, self.first = handler, merchant_risk, True

    def __call__(self, batch_df, batch_id: int) -> None:
        if not self.first:
            return self.handler(batch_df, batch_id)
        phase(f"first micro-batch ({batch_id}) called")
        self.merchant_risk.await_first(FIRST_SNAPSHOT_TIMEOUT_SECONDS)
        phase("merchant snapshot read")
        self.handler(batch_df, batch_id)
        self.first = False
        phase(f"first micro-batch ({batch_id}) committed")
        return None


def _auditor(targets):
    from streaming.metrics import record_audit
    from streaming.sinks import pg_connect

    def audit(event_type: str, details: dict) -> None:
        conn = pg_connect(targets)
        try:
            record_audit(conn, event_type, details)
        finally:
            conn.close()

    return audit


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The job's command line; defaults come from ``settings`` where a setting names them."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="spark-submit streaming/scoring_job.py",
                                     description="Spark Structured Streaming fraud scoring job",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint-dir", type=Path, default=settings.checkpoint_dir / "scoring-job",
                        help="checkpoints of the queries (offsets); on a cluster a shared file system "
                             "(FRAUDOPS_STATE_DIR/checkpoints/scoring-job)")
    parser.add_argument("--trigger-seconds", type=float, default=0.5, help="micro-batch interval, > 0")
    parser.add_argument("--starting-offsets", default="earliest", choices=["earliest", "latest"],
                        help="where a first start (no checkpoint) reads the topics from")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=50_000,
                        help="most Kafka records one micro-batch reads, > 0")
    parser.add_argument("--pg-schema", default="public", help="PostgreSQL schema of the tables written")
    parser.add_argument("--redis-prefix", default="",
                        help="prefix of the Redis and feature-store keys (tests isolate themselves with it)")
    parser.add_argument("--topic", default=None, help="transactions topic (default: KAFKA_TOPIC)")
    parser.add_argument("--labels-topic", default=None, help="labels topic (default: KAFKA_LABELS_TOPIC)")
    parser.add_argument("--alerts-topic", default=None, help="alerts topic (default: KAFKA_ALERTS_TOPIC)")
    parser.add_argument("--decisions-topic", default=settings.kafka_decisions_topic,
                        help="the decision service's decided transactions, recorded as decided (default: "
                             "KAFKA_DECISIONS_TOPIC, here %(default)s; '' reads none)")
    parser.add_argument("--model-uri", default=None,
                        help=f"the served model (default: MODEL_URI, here {settings.model_uri})")
    parser.add_argument("--model-refresh-seconds", type=float, default=10.0,
                        help="how often the driver asks the registry which version MODEL_URI names, > 0")
    parser.add_argument("--merchant-refresh-seconds", type=float, default=60.0,
                        help="how often the driver re-reads the merchant risk snapshot, > 0")
    parser.add_argument("--label-delay", default="1h", help="how long after a transaction its label is known "
                        "(30m, 1h, 7d or seconds); a warning when the served version was trained with another")
    parser.add_argument("--no-labels", action="store_true", help="do not run the labels query")
    parser.add_argument("--scoring-tasks", type=int, default=2,
                        help="Python tasks per micro-batch (users hashed over them; 1: no shuffle)")
    parser.add_argument("--metrics-port", type=int, default=settings.streaming_metrics_port,
                        help="port of the driver's Prometheus /metrics (default: STREAMING_METRICS_PORT, "
                             "here %(default)s; 0: none)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address the metrics bind to (0.0.0.0 in a container, for Prometheus)")
    return parser


def parse_args(argv: list[str] | None, settings: Settings) -> JobOptions:
    """The job's options from the command line (argparse errors exit with status 2)."""
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    for name in ("trigger_seconds", "model_refresh_seconds", "merchant_refresh_seconds"):
        if getattr(args, name) <= 0:
            parser.error(f"argument --{name.replace('_', '-')}: must be > 0")
    if args.max_offsets_per_trigger <= 0:
        parser.error("argument --max-offsets-per-trigger: must be > 0")
    if args.scoring_tasks <= 0:
        parser.error("argument --scoring-tasks: must be > 0")
    if not 0 <= args.metrics_port < 65536:
        parser.error("argument --metrics-port: must be 0-65535")
    return JobOptions(
        checkpoint_dir=args.checkpoint_dir, trigger_seconds=args.trigger_seconds,
        starting_offsets=args.starting_offsets, max_offsets_per_trigger=args.max_offsets_per_trigger,
        pg_schema=args.pg_schema, redis_prefix=args.redis_prefix, topic=args.topic,
        labels_topic=args.labels_topic, alerts_topic=args.alerts_topic, model_uri=args.model_uri,
        decisions_topic=args.decisions_topic or None,
        model_refresh_seconds=args.model_refresh_seconds,
        merchant_refresh_seconds=args.merchant_refresh_seconds, with_labels=not args.no_labels,
        label_delay_seconds=_label_delay(parser, args.label_delay),
        scoring_tasks=args.scoring_tasks, metrics_port=args.metrics_port, metrics_host=args.metrics_host,
    )


STOP_GRACE_SECONDS = 90  # after SIGTERM/SIGINT, a stop that hangs longer ends the process


def _label_delay(parser, value: str) -> float:
    from fraudops.modeling.registry import parse_label_delay

    try:
        return parse_label_delay(value, "--label-delay")
    except ValueError as exc:
        parser.error(str(exc))


def _exit_now(code: int) -> None:
    log.error("the queries did not stop within %ss of the signal: exiting", STOP_GRACE_SECONDS)
    logging.shutdown()
    os._exit(code)


def _exit_if_stop_hangs() -> None:
    """The last resort after a stop signal: faulthandler's C watchdog thread, which needs neither
    the GIL nor a lock, writes every thread's traceback to a file and exits the process if it
    still runs STOP_GRACE_SECONDS + 30 s later (seen once in CI: a driver whose JVM was gone
    outlived SIGTERM by 17 minutes, the Python watchdog below it never ran)."""
    import faulthandler
    import tempfile

    report = tempfile.NamedTemporaryFile(prefix="scoring-job-stop-hang-", suffix=".txt", delete=False)  # noqa: SIM115 - kept open for the C thread
    _STOP_HANG_REPORT.append(report.name)
    faulthandler.dump_traceback_later(STOP_GRACE_SECONDS + 30, exit=True, file=report)


_STOP_HANG_REPORT: list[str] = []


def _cancel_stop_hang_exit() -> None:
    """The process ends normally: no hang to report (the empty report file goes)."""
    import faulthandler

    faulthandler.cancel_dump_traceback_later()
    for path in _STOP_HANG_REPORT:
        with contextlib.suppress(OSError):
            os.unlink(path)


def supervise(spark, settings: Settings, options: JobOptions, max_restarts: int = 20,
              early: EarlyStart | None = None, zygote=None) -> int:
    """Run the queries; when one fails (e.g. a sink is down), stop all and restart them from
    their checkpoints with a growing pause. SIGTERM/SIGINT stop them cleanly."""
    from streaming.model_server import ModelUnavailableError

    stopping = {"flag": False, "signal": 0}

    def watchdog() -> None:
        # started before any signal and lock-free (it only reads the flag): a main thread stuck
        # while stopping (seen: a finalizer blocked on a lock after SIGTERM, the JVM gone) can
        # neither start a timer nor stop this one
        while not stopping["flag"]:
            time.sleep(0.5)
        time.sleep(STOP_GRACE_SECONDS)
        _exit_now(128 + stopping["signal"])

    threading.Thread(target=watchdog, name="stop-watchdog", daemon=True).start()

    def stop(signum, _frame):
        # only flags here: a py4j call inside a signal handler can interrupt the main thread's
        # own py4j call on the same connection and hang; the loop below stops the queries
        if not stopping["flag"]:
            _exit_if_stop_hangs()
        stopping["signal"] = signum
        stopping["flag"] = True
        log.info("signal %s: stopping the queries", signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for attempt in range(max_restarts + 1):
        if stopping["flag"]:
            return 0
        try:
            model = early.model_server() if early is not None and attempt == 0 else None
            job = start_queries(spark, settings, options, model=model, zygote=zygote)
        except ModelUnavailableError as exc:
            log.error("%s", exc)
            return 2
        except Exception as exc:  # noqa: BLE001 - a service the start needs (PostgreSQL) is down: retry
            log.error("could not start the queries: %s", str(exc).splitlines()[0] if str(exc) else exc)
            job = None
        while job is not None and not stopping["flag"] and all(q.isActive for q in job.queries):
            time.sleep(0.5)
        failed = job.failures() if job is not None else []
        if job is not None:
            job.stop()
        if stopping["flag"]:
            return 0
        for query in failed:
            log.error("query %s failed: %s", query.name, str(query.exception()).splitlines()[0])
        pause = min(60, 2 ** attempt)
        log.error("restarting from the checkpoints in %ss (restart %d of %d)", pause, attempt + 1, max_restarts)
        resume_at = time.monotonic() + pause
        while not stopping["flag"] and time.monotonic() < resume_at:
            time.sleep(0.5)
    return 0 if stopping["flag"] else 1


def main(argv: list[str] | None = None) -> int:
    from fraudops.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_format)  # LOG_FORMAT=json: JSON lines with the batch id
    phase("driver Python running")
    from streaming import worker_zygote

    zygote = worker_zygote.start()  # local mode: the executors' Python daemon warms up meanwhile
    options = parse_args(argv, settings)
    from streaming import prometheus

    prometheus.serve(options.metrics_port, options.metrics_host)  # counted from each micro-batch's results
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    early = EarlyStart(settings, options, zygote).begin()  # imports and the registry while the JVM works
    from fraudops.spark_session import build_spark_session

    spark = build_spark_session("fraud-scoring-job", python_daemon_module=WORKER_DAEMON)
    spark.sparkContext.setLogLevel("WARN")
    phase("Spark session ready")
    try:
        return supervise(spark, settings, options, early=early, zygote=zygote)
    finally:
        spark.stop()


def _run_and_exit() -> None:
    """main(), then exit at once: the queries and Spark are stopped by then, and a finalizing
    interpreter could hang on a library's threads (seen: a driver left running after SIGTERM,
    its JVM gone, with the watchdog's timer frozen by the finalization)."""
    try:
        code = main()
    except SystemExit as exc:  # argparse errors, explicit exits
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported, then the same hard exit
        import traceback

        traceback.print_exc()
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _cancel_stop_hang_exit()  # after the flushes: a flush into a stuck pipe is a hang too
    os._exit(code)


if __name__ == "__main__":
    _run_and_exit()
