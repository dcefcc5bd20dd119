"""Benchmark of the feature code: batch throughput and the streaming step's cost per user call.

Reads: nothing (generates a history with simulator.generator.generate_history).
Writes: bench/results/features_bench.json (git-ignored) and a summary on stdout.
Run:    .venv/bin/python -m bench.features_bench --days 30 --customers 6700
        (about 500k rows; --repeat N takes the best of N runs)

Measured: compute_features (pandas, one core) rows per second on the whole history, with and
without labels; and user_window_features called the way the streaming processor calls it (one
user's micro-batch of a few events, state round-tripped through its record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "features_bench.json"


def best_of(repeat: int, run) -> float:
    """Fastest wall time of ``repeat`` calls of ``run`` (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_batch(history, repeat: int) -> dict:
    from features.batch import compute_features

    with_labels = best_of(repeat, lambda: compute_features(history))
    without_labels = best_of(repeat, lambda: compute_features(history, use_history_labels=False))
    rows = len(history)
    return {
        "rows": rows,
        "users": int(history["user_id"].nunique()),
        "seconds_with_labels": round(with_labels, 3),
        "rows_per_second_with_labels": round(rows / with_labels),
        "seconds_without_labels": round(without_labels, 3),
        "rows_per_second_without_labels": round(rows / without_labels),
    }


def bench_stream_step(history, users: int, events_per_call: int) -> dict:
    """Replay ``users`` users' histories ``events_per_call`` events at a time through the state."""
    from tests.feature_oracle import UserState, user_window_features  # the former per-user stream step

    chosen = history["user_id"].drop_duplicates().head(users)
    subset = history[history["user_id"].isin(chosen)].sort_values("transaction_time", kind="mergesort")
    calls = 0
    start = time.perf_counter()
    for _, events in subset.groupby("user_id", sort=False):
        state = None
        for first in range(0, len(events), events_per_call):
            _, new_state = user_window_features(state, events.iloc[first : first + events_per_call])
            state = UserState.from_record(new_state.to_record())
            calls += 1
    elapsed = time.perf_counter() - start
    return {
        "users": int(len(chosen)),
        "events": int(len(subset)),
        "events_per_call": events_per_call,
        "calls": calls,
        "ms_per_call": round(1000 * elapsed / calls, 3),
        "events_per_second": round(len(subset) / elapsed),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--customers", type=float, default=6700.0)
    parser.add_argument("--seed", type=float, default=42.0)
    parser.add_argument("--repeat", type=float, default=1.0)
    parser.add_argument("--stream-users", type=float, default=200.0)
    parser.add_argument("--events-per-call", type=float, default=3.0)
    args = parser.parse_args(argv)

    from simulator.generator import generate_history

    history = generate_history(days=int(args.days), customers=int(args.customers), seed=int(args.seed))
    result = {
        "batch": bench_batch(history, int(args.repeat)),
        "stream_step": bench_stream_step(history, int(args.stream_users), int(args.events_per_call)),
        "numpy": np.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
