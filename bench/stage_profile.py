"""Where a micro-batch's time goes: the scoring pass's steps, timed one by one, in process.

Reads:  the live simulator (a backlog of ``messages`` transactions of ``customers`` card holders),
        the model registered for the run, the local stack (feature store, PostgreSQL, Redis, Kafka).
Writes: its own PostgreSQL schema, Redis and feature-store prefixes, alerts topic (removed
        afterwards); results returned to bench.run or printed.
Run:    .venv/bin/python -m bench.stage_profile [--messages 20000] [--batch 2000]

The backlog is cut into micro-batches of ``batch`` records (as the job's Kafka source would hand
them over) and each goes through the steps of streaming.scoring_pass.process_records with the
same functions: parse + validate, stateless features, the feature-store read and the as-of user
features, merchant features, scoring (pyfunc + JSON), the feature-store write, the PostgreSQL
transaction, Redis alerts, the alerts topic. Seconds per step are summed over the batches; the
first batch (model load, connections) is left out, as a warm Python worker has them. Then
``single_rows`` one-row batches: the fixed cost of a batch in the pass, per step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.bench_scoring import kafka_records, served_model
from bench.bench_support import (
    MessageStream,
    create_namespace,
    drop_namespace,
    machine_load,
    register_model,
    run_id,
)


def profile_batch(records: pd.DataFrame, inputs, timings: dict) -> None:
    """One micro-batch through the pass's steps, adding each step's seconds to ``timings``."""
    from features.definition import FEATURE_COLUMNS
    from features.merchant import snapshot_merchant_features
    from features.online import online_user_features
    from features.stateless import stateless_features
    from features.stream import remember_events
    from features.user_state import event_arrays
    from streaming import scoring_pass as sp

    def timed(step, action):
        started = time.perf_counter()
        value = action()
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - started
        return value

    valid, quarantine = timed("parse_validate", lambda: sp._split(records))
    store = sp.worker_store(inputs.store)
    arrays = event_arrays(valid)
    stateless = timed("stateless_features", lambda: stateless_features(valid, arrays["time_us"]))
    user = timed("store_read_user_features", lambda: online_user_features(store, valid, arrays))
    merchant = timed("merchant_features", lambda: snapshot_merchant_features(valid, None))
    featured = pd.concat([valid.assign(amount=stateless["amount"].to_numpy()),
                          pd.concat([stateless, user, merchant], axis=1)[FEATURE_COLUMNS].drop(columns="amount")], axis=1)
    scored = timed("score_and_json", lambda: sp.score_rows(featured, inputs.served, inputs.tracking_uri))
    scored["scored_at"] = pd.Timestamp.now(tz="UTC")
    timed("store_write", lambda: remember_events(store, valid))
    alerts = timed("postgres_transaction", lambda: sp._write(sp.worker_pg(inputs.targets), scored, quarantine,
                                                              inputs.targets))
    timed("redis_alerts", lambda: sp.push_alerts_to_redis(alerts, inputs.targets, sp.worker_alert_redis(inputs.targets)))
    timed("alerts_topic", lambda: sp.publish_alerts(alerts, inputs.targets, sp.worker_producer(inputs.targets)))
    timings["rows"] = timings.get("rows", 0) + len(valid)


def run(settings, messages: int = 20_000, customers: int = 5_000, batch: int = 2_000, model=None,
        single_rows: int = 50) -> dict:
    from streaming.scoring_job import JobOptions, feature_store_target, sink_targets
    from streaming.scoring_pass import PassInputs

    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    ns = create_namespace(settings, run_id(), 1, scratch=Path(tempfile.gettempdir()))
    load_before = machine_load()
    try:
        options = JobOptions(checkpoint_dir=ns.checkpoint_dir, pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                             alerts_topic=ns.alerts_topic)
        inputs = PassInputs(sink_targets(settings, options), feature_store_target(settings, options),
                            served_model(settings, model), settings.mlflow_tracking_uri)
        records = kafka_records(MessageStream(customers, expected=messages, seed=3).take(messages), ns.topic)
        timings: dict = {}
        profile_batch(records.head(batch), inputs, {})  # warm-up batch, not counted
        for start in range(batch, len(records), batch):
            profile_batch(records.iloc[start:start + batch], inputs, timings)
        one_row: dict = {}  # the fixed cost of a batch: single-row batches (new transactions)
        lone = kafka_records(MessageStream(customers, expected=single_rows, seed=4).take(single_rows), ns.topic)
        for position in range(single_rows):
            profile_batch(lone.iloc[position:position + 1], inputs, one_row)
    finally:
        drop_namespace(settings, ns)
    rows = timings.pop("rows")
    total = sum(timings.values())
    batches = one_row.pop("rows", 0)
    return {"batch_rows": batch, "rows": rows, "seconds_total": round(total, 3),
            "rows_per_second": round(rows / total) if total else None,
            "steps": {step: {"seconds": round(s, 3), "share": round(s / total, 3), "ms_per_1000_rows": round(1e6 * s / rows, 1)}
                      for step, s in timings.items()},
            "single_row_batches": {"batches": batches,
                                   "ms_per_batch": round(1e3 * sum(one_row.values()) / batches, 1) if batches else None,
                                   "steps_ms_per_batch": {step: round(1e3 * s / batches, 2) for step, s in one_row.items()}
                                   if batches else {}},
            "load": {"before": load_before, "after": machine_load()}}


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args(argv)
    results = run(load_settings(), args.messages, args.customers, args.batch)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
