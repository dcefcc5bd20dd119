"""End-to-end benchmark of the scoring job as users run it (spark-submit, local[2]): Kafka ->
one pandas pass per micro-batch (validation, features from the online feature store, model) ->
PostgreSQL, Redis and the alerts topic. Needs the local stack (`make stack-up`).

Reads:  the live simulator (simulator.generator), the MLflow registry (the run's model).
Writes: its own topics, PostgreSQL schema, Redis and feature-store prefixes (removed
        afterwards), job logs under bench/results/logs/, the results (JSON) for bench.run.
Run:    .venv/bin/python -m bench.bench_streaming [--rate-seconds 200] [--quick] [--startup-only]
        [--model-name NAME]   (--startup-only: phases 1 and 5 only, see run_startup; also
        `python -m bench.run --only startup`)
        A short experiment, one latency phase alone with each micro-batch's breakdown (run_latency):
        .venv/bin/python -m bench.bench_streaming --latency-only --rates 2000 --rate-seconds 60 \
            --warmup-seconds 10 [--trigger-seconds 0.5] [--single-rows 5] [--job-arg=--scoring-tasks
            --job-arg=1] [--spark-conf KEY=VALUE] [--model-name NAME] [--output results.json]

One job run, in this order (latency = Kafka record timestamp -> the PostgreSQL transaction that
stored the row, per row, from ``transactions.ingested_at``; the job's own commit-time latency
per batch is reported next to it):
1. start: a small backlog, then the job; first_row_after_start_s = job start -> first row stored;
2. sustained throughput: ``throughput_messages`` produced as fast as the producer goes;
   tx/s = messages / (last row stored - first produced), and the steady rate between 10% and
   90% of them from a 1 s row-count trace;
3. latency at 2,000 and at 500 tx/s: ``rate_seconds`` of paced production each; the first
   ``warmup_seconds`` of each are left out; load average sampled every 5 s meanwhile;
4. single-row micro-batches: lone messages 3 s apart; the job's handler time of those batches;
5. SIGKILL of the whole job, a backlog produced while it is down, a restart:
   first_row_after_kill_s = restart -> first new row stored; then every row exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import threading
import time
from pathlib import Path

from bench.bench_support import (
    RESULTS_DIR,
    JobProcess,
    MessageStream,
    batch_breakdown,
    create_namespace,
    drop_namespace,
    job_reported_latency,
    latency_percentiles,
    machine_load,
    produce,
    register_model,
    run_id,
    scalar,
    wait_for_rows,
)

WARMUP_MESSAGES = 2_000
TRIGGER_SECONDS = 0.5  # the scoring job's default (streaming.scoring_job --trigger-seconds)
KILL_BACKLOG = 2_000


def steady_rate(trace: list[tuple[float, int]], base: int, n: int) -> float | None:
    """Rows/s between the first trace points at or above 10% and 90% of ``n`` new rows."""
    def first_at(fraction: float) -> tuple[float, int] | None:
        return next(((t, c) for t, c in trace if c - base >= fraction * n), None)

    low, high = first_at(0.1), first_at(0.9)
    if not low or not high or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


class LoadSampler:
    """1-minute load average every ``interval`` seconds while running (other agents' work included)."""

    def __init__(self, interval: float = 5.0):
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> float | None:
        self._stop.set()
        return round(statistics.mean(self.samples), 2) if self.samples else None


def time_to_first_new_row(settings, ns, job: JobProcess, base: int, timeout: float) -> float:
    """Seconds from now until the job has stored more than ``base`` rows."""
    started = time.monotonic()
    wait_for_rows(settings, ns, base + 1, job, timeout, interval=0.25)
    return round(time.monotonic() - started, 1)


def start_warm(settings, ns, job: JobProcess, stream: MessageStream, timeout: float) -> float:
    """WARMUP_MESSAGES stored in the topic, the job started, then waited for until it has stored
    them all; returns the seconds from start to its first stored row."""
    produce(settings, ns.topic, stream.take(WARMUP_MESSAGES))
    job.start()
    first_row = time_to_first_new_row(settings, ns, job, 0, timeout)
    wait_for_rows(settings, ns, WARMUP_MESSAGES, job, timeout)
    return first_row


def measure_throughput(settings, ns, job: JobProcess, messages: list, base: int, timeout: float) -> dict:
    """Produce ``messages`` at an unlimited rate while the job runs; rows/s until all stored."""
    load_before = machine_load()
    produced = produce(settings, ns.topic, messages, rate=0)
    trace = wait_for_rows(settings, ns, base + len(messages), job, timeout)
    seconds = trace[-1][0] - produced["started_at"]
    steady = steady_rate(trace, base, len(messages))
    return {"messages": len(messages), "producer_messages_per_second": produced["messages_per_second"],
            "seconds": round(seconds, 2), "transactions_per_second": round(len(messages) / seconds, 1),
            "steady_transactions_per_second": None if steady is None else round(steady, 1),
            "load_before": load_before, "load_after": machine_load()}


def measure_latency(settings, ns, job: JobProcess, stream: MessageStream, rate: float, seconds: float,
                    warmup_seconds: float, base: int, timeout: float, batches: bool = False) -> dict:
    """``seconds`` of production paced at ``rate``/s; latency of the rows produced after the
    warm-up. ``batches``: also where the micro-batches of that span spent their time
    (bench_support.batch_breakdown, per batch)."""
    sampler = LoadSampler()
    messages = stream.take(int(rate * seconds))
    started = time.time()
    produced = produce(settings, ns.topic, messages, rate=rate)
    wait_for_rows(settings, ns, base + len(messages), job, timeout)
    load = sampler.stop()
    since = started + warmup_seconds
    result = {"target_rate": rate, "achieved_producer_rate": produced["messages_per_second"],
              "messages": len(messages), "seconds": seconds, "warmup_seconds": warmup_seconds,
              "latency": latency_percentiles(settings, ns, since),
              "job_reported": job_reported_latency(settings, ns, since), "load_avg_during": load}
    if batches:
        result["batches"] = batch_breakdown(settings, ns, since, time.time())
    return result


def single_row_batches(settings, ns, job: JobProcess, stream: MessageStream, base: int, count: int = 5) -> dict:
    """Lone messages 3 s apart: the job's handler time of 1-row micro-batches and their latency."""
    since = time.time()
    for i in range(count):
        produce(settings, ns.topic, stream.take(1))
        wait_for_rows(settings, ns, base + i + 1, job, 120, interval=0.1)
        time.sleep(3)
    handler = scalar(settings, f"""
        WITH batches AS (
            SELECT labels->>'batch_id' AS batch_id,
                   max(metric_value) FILTER (WHERE metric_name = 'scored_rows') AS rows,
                   max(metric_value) FILTER (WHERE metric_name = 'batch_write_seconds') AS seconds
            FROM "{ns.pg_schema}".monitoring_metrics
            WHERE labels->>'query' = 'scoring' AND recorded_at >= to_timestamp(%s) GROUP BY 1)
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM batches WHERE rows = 1""", (since,))
    return {"messages": count, "handler_seconds_median": None if handler is None else round(float(handler), 3),
            "latency": latency_percentiles(settings, ns, since)}


def kill_and_restart(settings, ns, job: JobProcess, stream: MessageStream, base: int, timeout: float) -> dict:
    """SIGKILL the job's process group, produce a backlog, restart; time to the first new row."""
    os.killpg(job.proc.pid, signal.SIGKILL)
    job.proc.wait(60)
    produce(settings, ns.topic, stream.take(KILL_BACKLOG))
    stored_before = int(scalar(settings, f'SELECT count(*) FROM "{ns.pg_schema}".transactions'))
    job.start()
    first_row = time_to_first_new_row(settings, ns, job, stored_before, timeout)
    wait_for_rows(settings, ns, base + KILL_BACKLOG, job, timeout)
    total = int(scalar(settings, f'SELECT count(*) FROM "{ns.pg_schema}".transactions'))
    distinct = int(scalar(settings, f'SELECT count(DISTINCT transaction_id) FROM "{ns.pg_schema}".transactions'))
    return {"first_row_after_kill_s": first_row, "rows": total, "distinct": distinct,
            "expected": base + KILL_BACKLOG, "exactly_once": total == distinct == base + KILL_BACKLOG}


def run(settings, scratch: Path, customers: int = 20_000, throughput_messages: int = 200_000,
        rates: tuple[float, ...] = (2_000.0, 500.0), rate_seconds: float = 200.0, warmup_seconds: float = 20.0,
        partitions: int = 4, trigger_seconds: float = TRIGGER_SECONDS, max_offsets_per_trigger: int = 50_000,
        timeout: float = 1800, model=None) -> dict:
    """The phases above in one job run; returns the results."""
    model, ns, job = _job_of_a_new_namespace(settings, scratch, partitions, trigger_seconds,
                                             max_offsets_per_trigger, model)
    stream = MessageStream(customers, expected=throughput_messages + int(sum(rates) * rate_seconds) + 20_000)
    result = {"partitions": partitions, "trigger_seconds": trigger_seconds, "customers": customers,
              "max_offsets_per_trigger": max_offsets_per_trigger, "job_log": str(job.log_path), "latency": []}
    done = 0
    try:
        result["first_row_after_start_s"] = start_warm(settings, ns, job, stream, timeout)
        done = WARMUP_MESSAGES
        result["throughput"] = measure_throughput(settings, ns, job, stream.take(throughput_messages), done, timeout)
        done += throughput_messages
        for rate in rates:
            phase = measure_latency(settings, ns, job, stream, rate, rate_seconds, warmup_seconds, done, timeout,
                                    batches=True)
            result["latency"].append(phase)
            done += phase["messages"]
        result["single_row"] = single_row_batches(settings, ns, job, stream, done)
        done += result["single_row"]["messages"]
        result["kill"] = kill_and_restart(settings, ns, job, stream, done, timeout)
    except RuntimeError as exc:
        result["error"] = str(exc)[:2000]
    finally:
        result["peak_rss_mb"] = round(job.peak_rss_bytes / 2**20)
        result["exit_code"] = job.stop()
        drop_namespace(settings, ns)
    return {"model": {"name": model.name, "version": model.version}, "runs": [result]}


def run_latency(settings, scratch: Path, rates: tuple[float, ...] = (2_000.0,), rate_seconds: float = 60.0,
                warmup_seconds: float = 15.0, customers: int = 20_000, partitions: int = 4,
                trigger_seconds: float = TRIGGER_SECONDS, max_offsets_per_trigger: int = 50_000,
                spark_conf: dict[str, str] | None = None, job_args: list[str] | None = None,
                single_rows: int = 0, backlog: int = 0, timeout: float = 900, model=None) -> dict:
    """Only the fixed-rate latency phases (3 above), each with its micro-batches' breakdown: a
    short experiment (e.g. one trigger interval or Spark setting against another) that takes
    ~30 s of start-up plus ``rate_seconds`` per rate. The job is warm before the first phase
    (a backlog of WARMUP_MESSAGES stored, then 10 s at the first rate not measured).
    ``backlog``: that many more messages stored first (as fast as the job goes), so PostgreSQL
    holds what the full run's latency phases find there (its throughput phase's 200,000 rows:
    e.g. the merchant snapshot's refresh reads them)."""
    model, ns, job = _job_of_a_new_namespace(settings, scratch, partitions, trigger_seconds,
                                             max_offsets_per_trigger, model, spark_conf, job_args)
    stream = MessageStream(customers, expected=int(sum(rates) * rate_seconds + rates[0] * 10) + WARMUP_MESSAGES
                           + single_rows + backlog + 1_000)
    result = {"partitions": partitions, "trigger_seconds": trigger_seconds, "customers": customers,
              "max_offsets_per_trigger": max_offsets_per_trigger, "spark_conf": spark_conf or {},
              "job_args": job_args or [], "job_log": str(job.log_path), "latency": []}
    try:
        result["first_row_after_start_s"] = start_warm(settings, ns, job, stream, timeout)
        done = WARMUP_MESSAGES
        if backlog:
            result["backlog"] = measure_throughput(settings, ns, job, stream.take(backlog), done, timeout)
            done += backlog
        settle = stream.take(int(rates[0] * 10))
        produce(settings, ns.topic, settle, rate=rates[0])
        done += len(settle)
        wait_for_rows(settings, ns, done, job, timeout)
        for rate in rates:
            phase = measure_latency(settings, ns, job, stream, rate, rate_seconds, warmup_seconds, done, timeout,
                                    batches=True)
            result["latency"].append(phase)
            done += phase["messages"]
        if single_rows:
            since = time.time()
            result["single_row"] = single_row_batches(settings, ns, job, stream, done, single_rows)
            result["single_row"]["batches"] = batch_breakdown(settings, ns, since)
    except RuntimeError as exc:
        result["error"] = str(exc)[:2000]
    finally:
        result["exit_code"] = job.stop()
        drop_namespace(settings, ns)
    return {"model": {"name": model.name, "version": model.version}, "runs": [result]}


def _job_of_a_new_namespace(settings, scratch, partitions: int, trigger_seconds: float,
                            max_offsets_per_trigger: int, model=None, spark_conf=None, job_args=None):
    """The benchmark model (registered when not given), a fresh namespace (topics, schema, keys)
    and the spark-submit job over it, not started yet; the driver's class-data archive built."""
    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    _class_data_archive()
    name = run_id()
    ns = create_namespace(settings, name, partitions, scratch)
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    job = JobProcess.build(ns, model.name, logs / f"job-{name}.log", trigger_seconds, max_offsets_per_trigger,
                           spark_conf=spark_conf, job_args=job_args)
    return model, ns, job


def _class_data_archive() -> None:
    """Build the driver JVM's class-data archive once (devstack.spark_cds), as devstack.jobs does."""
    from devstack.spark_cds import build_archive

    build_archive()


def start_phases(log_text: str, after: int = 0) -> dict:
    """The job's start-up milestones (``start-up: <name> at +<s>s`` lines) from ``after`` on,
    with the Python daemon's start and end of preloading (streaming.worker_daemon) on the same
    clock (seconds since spark-submit)."""
    import re
    from datetime import datetime

    text, found = log_text[after:], {}
    for match in re.finditer(r"start-up: (.+?) at \+([0-9.]+)s", text):
        found.setdefault(re.sub(r" \(\d+\)", "", match.group(1)), float(match.group(2)))
    first = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \S+ \S+ start-up: driver Python running at "
                      r"\+([0-9.]+)s", text, re.MULTILINE)
    daemon = re.search(r"worker daemon \d+: started at ([0-9.]+), ready at ([0-9.]+)", text)
    if first and daemon:
        submitted = datetime.strptime(first.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - float(first.group(2))
        found["Python daemon started"] = round(float(daemon.group(1)) - submitted, 1)
        found["Python daemon ready"] = round(float(daemon.group(2)) - submitted, 1)
    return found


def run_startup(settings, scratch: Path, customers: int = 20_000, between_messages: int = 50_000,
                partitions: int = 4, trigger_seconds: float = TRIGGER_SECONDS, max_offsets_per_trigger: int = 50_000,
                timeout: float = 900, model=None) -> dict:
    """Only phases 1 and 5 above: start (first row after start), ``between_messages`` stored
    (so PostgreSQL holds what a restart reads, e.g. the merchant snapshot's 30 days), SIGKILL
    + backlog + restart (first row after kill, exactly once). Each with the job's start-up
    milestones (seconds since spark-submit) from its log."""
    model, ns, job = _job_of_a_new_namespace(settings, scratch, partitions, trigger_seconds,
                                             max_offsets_per_trigger, model)
    stream = MessageStream(customers, expected=between_messages + WARMUP_MESSAGES + KILL_BACKLOG + 1_000)
    result = {"partitions": partitions, "trigger_seconds": trigger_seconds, "customers": customers,
              "between_messages": between_messages, "job_log": str(job.log_path)}
    sampler = LoadSampler(interval=2.0)
    log_size = 0  # where the restart's part of the job log begins
    try:
        result["load_at_start"] = machine_load()["load_1m"]
        result["first_row_after_start_s"] = start_warm(settings, ns, job, stream, timeout)
        done = WARMUP_MESSAGES
        if between_messages:
            produce(settings, ns.topic, stream.take(between_messages))
            wait_for_rows(settings, ns, done + between_messages, job, timeout)
            done += between_messages
        log_size = len(job.log_tail(10**8))
        result["load_at_kill"] = machine_load()["load_1m"]
        result["kill"] = kill_and_restart(settings, ns, job, stream, done, timeout)
    except RuntimeError as exc:
        result["error"] = str(exc)[:2000]
    finally:
        result["load_avg_during"] = sampler.stop()
        result["exit_code"] = job.stop()
        # read once the job has stopped: a batch's end is logged after its rows are visible
        log_text = job.log_tail(10**8)
        result["start_phases"] = start_phases(log_text[:log_size] if log_size else log_text)
        if "kill" in result:
            result["kill"]["start_phases"] = start_phases(log_text, log_size)
        drop_namespace(settings, ns)
    return {"model": {"name": model.name, "version": model.version}, "runs": [result]}


def main(argv: list[str] | None = None) -> dict:
    import tempfile

    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000, help="distinct card holders in the stream")
    parser.add_argument("--throughput-messages", type=int, default=200_000, help="size of the throughput phase")
    parser.add_argument("--rate-seconds", type=float, default=200.0, help="duration of each fixed-rate phase")
    parser.add_argument("--quick", action="store_true", help="small volumes (harness check)")
    parser.add_argument("--startup-only", action="store_true",
                        help="only the start and SIGKILL + restart phases (first row after each)")
    parser.add_argument("--model-name", default=None,
                        help="serve this registered model's Production version (default: train and register one)")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the fixed-rate latency phases (--rates), with each micro-batch's breakdown")
    parser.add_argument("--rates", default="2000,500", help="offered rates of the latency phases (tx/s, comma-separated)")
    parser.add_argument("--warmup-seconds", type=float, default=20.0, help="left out at the start of each rate phase")
    parser.add_argument("--trigger-seconds", type=float, default=TRIGGER_SECONDS,
                        help="the job's trigger interval (its default, streaming.scoring_job)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the transactions topic")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="more spark-submit --conf (repeatable)")
    parser.add_argument("--job-arg", action="append", default=[], metavar="FLAG",
                        help="more flags of the scoring job, e.g. --job-arg=--scoring-tasks --job-arg=2")
    parser.add_argument("--backlog", type=int, default=0,
                        help="--latency-only: this many messages stored first, as in the full run's throughput phase")
    parser.add_argument("--single-rows", type=int, default=0,
                        help="--latency-only: then this many lone messages 3 s apart (single-row batches)")
    parser.add_argument("--output", type=Path, default=None, help="also write the results (JSON) here")
    args = parser.parse_args(argv)
    rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    spark_conf = dict(item.split("=", 1) for item in args.spark_conf)
    tuning = {"partitions": args.partitions, "trigger_seconds": args.trigger_seconds,
              "max_offsets_per_trigger": args.max_offsets_per_trigger}
    settings = load_settings()
    model = None
    if args.model_name:
        from types import SimpleNamespace

        from fraudops.modeling.registry import configure_tracking, resolve_served_model

        configure_tracking(settings)
        served = resolve_served_model(f"models:/{args.model_name}/Production")
        model = SimpleNamespace(name=args.model_name, version=served.version)
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as scratch:
        if args.startup_only:
            results = run_startup(settings, Path(scratch), model=model)
        elif args.latency_only:
            results = run_latency(settings, Path(scratch), rates, args.rate_seconds, args.warmup_seconds,
                                  args.customers, spark_conf=spark_conf, job_args=args.job_arg,
                                  single_rows=args.single_rows, backlog=args.backlog, model=model, **tuning)
        elif args.quick:
            results = run(settings, Path(scratch), 2_000, 10_000, rate_seconds=20.0, warmup_seconds=5.0,
                          model=model)
        else:
            results = run(settings, Path(scratch), args.customers, args.throughput_messages, rates=rates,
                          rate_seconds=args.rate_seconds, warmup_seconds=args.warmup_seconds, model=model,
                          **tuning)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    print(json.dumps(_without_batch_rows(results), indent=2))
    return results


def _without_batch_rows(results: dict) -> dict:
    """The results without each micro-batch's row (kept in --output), for the terminal."""
    import copy

    shown = copy.deepcopy(results)
    for run_result in shown.get("runs", []):
        for phase in [*run_result.get("latency", []), run_result.get("single_row", {})]:
            phase.get("batches", {}).pop("rows", None)
    return shown


if __name__ == "__main__":
    main()
