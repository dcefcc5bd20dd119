"""End-to-end benchmark of the scoring job: Kafka -> Spark (validation, stateful features, model)
-> PostgreSQL, Redis and the alerts topic, with the job running as users run it (spark-submit,
local[2]). Needs the local stack (`make stack-up`).

Reads:  the live simulator (simulator.generator), the MLflow registry (a fresh model per run).
Writes: its own topics, PostgreSQL schema and Redis prefix (removed afterwards), job logs under
        bench/results/logs/, and the results (JSON) returned to bench.run or printed.
Run:    .venv/bin/python -m bench.bench_streaming [--customers 20000] [--max-messages 100000] [--quick]

What one configuration (partitions, trigger interval) measures, in one job run:
1. start-up: the job starts on a small warm-up backlog (first batches include JVM warm-up,
   Python workers, the model load); not counted in anything below;
2. sustained throughput at an unlimited producer rate: a batch of transactions produced as fast
   as the producer goes while the job runs (a probe sizes it to last ~2 minutes);
   transactions/s = messages / (last commit - first produce), and the steady rate between 10%
   and 90% of them from a 1 s row-count trace;
3. end-to-end latency at fixed rates: for each rate the job can sustain, ``rate_seconds`` of
   paced production, then per row ingested_at - produced_at (Kafka timestamp -> the PostgreSQL
   transaction that committed it) p50/p95/p99, plus the job's own per-batch latency metrics;
   a rate above the measured capacity is reported as not sustainable (its latency grows without
   bound), and latency is also measured at half the capacity;
4. the peak resident memory of the whole job (JVM + Python workers), sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.bench_support import (
    RESULTS_DIR,
    JobProcess,
    MessageStream,
    create_namespace,
    drop_namespace,
    job_reported_latency,
    latency_percentiles,
    machine_load,
    produce,
    register_model,
    run_id,
    wait_for_rows,
)

WARMUP_MESSAGES = 2_000
PROBE_MESSAGES = 2_000


def steady_rate(trace: list[tuple[float, int]], base: int, n: int) -> float | None:
    """Rows/s between the first trace points at or above 10% and 90% of ``n`` new rows."""
    def first_at(fraction: float) -> tuple[float, int] | None:
        return next(((t, c) for t, c in trace if c - base >= fraction * n), None)

    low, high = first_at(0.1), first_at(0.9)
    if not low or not high or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


def measure_throughput(settings, ns, job: JobProcess, messages: list, base: int, timeout: float) -> dict:
    """Produce ``messages`` at an unlimited rate while the job runs; rows/s until all committed."""
    load_before = machine_load()
    produced = produce(settings, ns.topic, messages, rate=0)
    trace = wait_for_rows(settings, ns, base + len(messages), job, timeout)
    done_at = trace[-1][0]
    seconds = done_at - produced["started_at"]
    return {"messages": len(messages), "producer_messages_per_second": produced["messages_per_second"],
            "seconds": round(seconds, 2), "transactions_per_second": round(len(messages) / seconds, 1),
            "steady_transactions_per_second": _round(steady_rate(trace, base, len(messages))),
            "load_before": load_before, "load_after": machine_load()}


def measure_latency(settings, ns, job: JobProcess, messages: list, rate: float, base: int, timeout: float) -> dict:
    """Produce ``messages`` paced at ``rate``/s; latency percentiles of exactly those rows."""
    load_before = machine_load()
    started = time.time()
    produced = produce(settings, ns.topic, messages, rate=rate)
    wait_for_rows(settings, ns, base + len(messages), job, timeout)
    return {"target_rate": rate, "achieved_producer_rate": produced["messages_per_second"],
            "messages": len(messages), "latency": latency_percentiles(settings, ns, started - 1.0),
            "job_reported": job_reported_latency(settings, ns, started - 1.0),
            "load_before": load_before, "load_after": machine_load()}


def run_configuration(settings, model_name: str, scratch: Path, partitions: int, trigger_seconds: float,
                      rates: list[float], customers: int, max_messages: int = 100_000,
                      throughput_seconds: float = 120.0, rate_seconds: float = 30.0,
                      max_offsets_per_trigger: int = 50_000, timeout: float = 1800) -> dict:
    """One job run: warm-up, a capacity probe, sustained throughput, then latency at each rate.

    The throughput phase is sized from the probe to last about ``throughput_seconds`` (at most
    ``max_messages``). A rate above 90% of the measured capacity is not run: its backlog, and so
    its latency, would grow without bound; it is reported as not sustainable, and latency is
    measured at half the capacity instead, where the job keeps up.
    """
    name = run_id()
    ns = create_namespace(settings, name, partitions, scratch)
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    job = JobProcess.build(ns, model_name, logs / f"job-{name}.log", trigger_seconds, max_offsets_per_trigger)
    stream = MessageStream(customers, expected=max_messages * 2)
    result = {"partitions": partitions, "trigger_seconds": trigger_seconds, "customers": customers,
              "max_offsets_per_trigger": max_offsets_per_trigger, "job_log": str(job.log_path), "latency": []}
    done = 0
    try:
        produce(settings, ns.topic, stream.take(WARMUP_MESSAGES))
        started = time.monotonic()
        job.start()
        wait_for_rows(settings, ns, WARMUP_MESSAGES, job, timeout)
        done = WARMUP_MESSAGES
        result["startup_seconds_incl_warmup"] = round(time.monotonic() - started, 1)
        probe = measure_throughput(settings, ns, job, stream.take(PROBE_MESSAGES), done, timeout)
        done += PROBE_MESSAGES
        size = int(min(max_messages, max(PROBE_MESSAGES, probe["transactions_per_second"] * throughput_seconds)))
        result["throughput"] = measure_throughput(settings, ns, job, stream.take(size), done, timeout)
        done += size
        capacity = result["throughput"]["transactions_per_second"]
        for rate in [*rates, round(capacity / 2, 1)]:
            if rate > 0.9 * capacity:
                result["latency"].append({"target_rate": rate, "not_sustainable": True,
                                          "backlog_growth_per_second": round(rate - capacity, 1)})
                continue
            phase = measure_latency(settings, ns, job, stream.take(int(rate * rate_seconds)), rate, done, timeout)
            result["latency"].append(phase)
            done += phase["messages"]
        result["job_batches"] = job_reported_latency(settings, ns, 0)
    except RuntimeError as exc:
        result["error"] = str(exc)[:2000]
    finally:
        result["peak_rss_mb"] = round(job.peak_rss_bytes / 2**20)
        result["exit_code"] = job.stop()
        drop_namespace(settings, ns)
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


DEFAULT_CONFIGURATIONS = [  # (partitions, trigger seconds, latency rates)
    (2, 1.0, [1000.0, 2000.0, 5000.0]),
    (1, 1.0, []),
    (2, 0.5, [1000.0]),
    (2, 5.0, [1000.0]),
]
QUICK_CONFIGURATIONS = [(2, 1.0, [2000.0])]


def run(settings, scratch: Path, customers: int = 20_000, max_messages: int = 100_000,
        throughput_seconds: float = 120.0, rate_seconds: float = 30.0, configurations=None, model=None) -> dict:
    """Every configuration against one model (registered when not given); returns the results."""
    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    results = {"model": {"name": model.name, "version": model.version, "train_rows": len(model.featured)},
               "runs": []}
    for partitions, trigger, rates in configurations or DEFAULT_CONFIGURATIONS:
        print(f"streaming: {partitions} partition(s), trigger {trigger}s, rates {rates} ...", flush=True)
        outcome = run_configuration(settings, model.name, scratch, partitions, trigger, rates, customers,
                                    max_messages, throughput_seconds, rate_seconds)
        print(json.dumps(outcome, indent=1), flush=True)
        results["runs"].append(outcome)
    return results


def main(argv: list[str] | None = None) -> dict:
    import tempfile

    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000, help="distinct card holders in the stream")
    parser.add_argument("--max-messages", type=int, default=100_000, help="cap of the throughput phase")
    parser.add_argument("--throughput-seconds", type=float, default=120.0, help="target length of that phase")
    parser.add_argument("--rate-seconds", type=float, default=30.0, help="duration of each fixed-rate phase")
    parser.add_argument("--quick", action="store_true", help="one configuration, small volumes (harness check)")
    args = parser.parse_args(argv)
    configurations = QUICK_CONFIGURATIONS if args.quick else None
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as scratch:
        results = run(load_settings(), Path(scratch), args.customers, args.max_messages,
                      20.0 if args.quick else args.throughput_seconds, 10.0 if args.quick else args.rate_seconds,
                      configurations)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
