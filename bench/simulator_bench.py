"""Benchmark of the simulator: history generation and live-stream throughput on one core.

Reads: nothing (simulator.generator builds its own world).
Writes: bench/results/simulator_bench.json (git-ignored) and a summary on stdout.
Run:    .venv/bin/python -m bench.simulator_bench --days 30 --customers 20000 --repeat 3

Measured (best of --repeat, wall and CPU time of this process, which is single-threaded numpy):
* history: generate_history(days, customers) -> DataFrame, transactions per second (target >= 100,000),
  with and without the world build;
* live: LiveSimulator events per second, and with serialize_message (the producer's Python side).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "simulator_bench.json"


def timed(run) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def bench_history(days: int, customers: int, repeat: int) -> dict:
    from simulator.generator import build_world, generate_history

    runs = [timed(lambda: generate_history(days, customers, seed=42)) for _ in range(repeat)]
    wall, cpu, frame = min(runs, key=lambda r: r[0])
    world_wall, _, _ = min((timed(lambda: build_world(42, customers)) for _ in range(repeat)), key=lambda r: r[0])
    rows = len(frame)
    return {
        "days": days, "customers": customers, "rows": rows, "fraud_rate": round(float(frame["is_fraud"].mean()), 5),
        "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
        "rows_per_second": round(rows / wall), "rows_per_cpu_second": round(rows / cpu),
        "world_build_seconds": round(world_wall, 3),
        "rows_per_second_without_world": round(rows / max(wall - world_wall, 1e-9)),
    }


def bench_live(events: int) -> dict:
    from fraudops.contract.messages import serialize_message
    from simulator.generator import LiveSimulator

    def make():
        return iter(LiveSimulator(seed=42, fraud_ratio=0.05, start=datetime(2025, 1, 1, tzinfo=UTC)))

    wall, cpu, _ = timed(lambda: sum(1 for _ in itertools.islice(make(), events)))
    wall_s, cpu_s, _ = timed(lambda: [serialize_message(e.message) for e in itertools.islice(make(), events) if e.kind == "transaction"])
    return {"events": events, "events_per_second": round(events / wall), "events_per_cpu_second": round(events / cpu),
            "serialized_per_second": round(events / wall_s), "serialized_per_cpu_second": round(events / cpu_s)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="simulator benchmark")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live-events", type=int, default=200_000)
    args = parser.parse_args(argv)
    results = {
        "history": bench_history(args.days, args.customers, args.repeat),
        "live": bench_live(args.live_events),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    h, live = results["history"], results["live"]
    print(f"history: {h['rows']:,} rows in {h['seconds']}s = {h['rows_per_second']:,} tx/s wall "
          f"({h['rows_per_cpu_second']:,} tx/CPU-s; world build {h['world_build_seconds']}s)")
    print(f"live:    {live['events_per_second']:,} events/s ({live['events_per_cpu_second']:,}/CPU-s); "
          f"with serialization {live['serialized_per_second']:,}/s ({live['serialized_per_cpu_second']:,}/CPU-s)")
    print(f"load average {results['load_average_1m']} on {results['cpus']} CPUs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
