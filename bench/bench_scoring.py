"""Benchmarks of the scoring pass in process: its scoring step vs the raw model, the seed's batch
path vs ours, and the cost of a batch against the number of users in the feature store.

Reads:  simulated history (simulator.generator), the model registered for the run (MLflow), the
        local stack for the sinks and the feature store; a PRIVATE redis-server (no persistence,
        a free port, stopped by PID) for the store-size comparison.
Writes: its own PostgreSQL schema / Redis and feature-store prefixes / alerts topic (removed
        afterwards); results returned to bench.run or printed.
Run:    .venv/bin/python -m bench.bench_scoring [--rows 20000] [--repeats 3]

1. scoring vs raw model: ``pipeline.predict_proba`` on a prepared frame with one thread (the
   floor) against the pass's scoring step (streaming.scoring_pass.score_rows: the registry
   pyfunc loaded once per worker, threshold, provenance, the feature vector as JSON) on the same
   featured rows. Ratio = scoring step / raw predict_proba.
2. one micro-batch, the seed's way vs ours: toPandas, a LabelEncoder applied row by row,
   StandardScaler, predict, pandas.to_sql append (the seed's consumer, on already featured
   rows) against streaming.scoring_pass.process_records on the same transactions as raw Kafka
   records (parse + validate, features from the feature store, score, COPY upserts of
   transactions and alerts, Redis, the alerts topic). Ratio = seed / ours.
3. batch cost vs users in the store: the same 10,000-transaction batch through the stream's
   features (features.stream.stream_features + remember_events) with 10,000 and with 1,000,000
   distinct users already in the store. Ratio = 1M / 10k.
Best of ``repeats`` for each timing (the machine is shared: the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_support import (
    MessageStream,
    create_namespace,
    drop_namespace,
    free_port,
    machine_load,
    register_model,
    run_id,
)

SEED_CATEGORICALS = ["currency", "country", "merchant_category", "transaction_type", "channel"]


def best_of(repeats: int, action) -> float:
    """The shortest wall time of ``repeats`` calls of ``action()``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def served_model(settings, model):
    from fraudops.modeling.registry import configure_tracking, resolve_served_model

    configure_tracking(settings)
    return resolve_served_model(f"models:/{model.name}/{model.version}")


# ---------------------------------------------------------------- 1. scoring step vs raw predict

def scoring_vs_raw(settings, model, rows: int, repeats: int) -> dict:
    from threadpoolctl import threadpool_limits

    from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from fraudops.modeling.model import fraud_probability, prepare_model_input
    from streaming.scoring_pass import score_rows, worker_model

    featured = model.featured.tail(rows).reset_index(drop=True)
    prepared = prepare_model_input(featured, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    with threadpool_limits(limits=1):  # as FraudModel.predict runs it: one thread per task
        raw_seconds = best_of(repeats, lambda: fraud_probability(model.pipeline, prepared))
    served = served_model(settings, model)
    worker_model(served, settings.mlflow_tracking_uri)  # loaded once per worker, as in the job
    step_seconds = best_of(repeats, lambda: score_rows(featured, served, settings.mlflow_tracking_uri))
    scores = score_rows(featured, served, settings.mlflow_tracking_uri)["fraud_score"].to_numpy()
    return {"rows": rows, "raw_predict_proba_seconds": round(raw_seconds, 4),
            "scoring_step_seconds": round(step_seconds, 4), "ratio_step_to_raw": round(step_seconds / raw_seconds, 2),
            "scores_equal_raw": bool(np.array_equal(scores, fraud_probability(model.pipeline, prepared)))}


# ---------------------------------------------------------------- 2. the seed's batch vs ours

class SeedScorer:
    """The seed consumer's scoring, reproduced: LabelEncoders, a StandardScaler, a classifier
    on the encoded+scaled matrix (the same estimator family and parameters as ours)."""

    def __init__(self, train: pd.DataFrame, numeric: list[str], seed: int = 5):
        from sklearn.preprocessing import LabelEncoder, StandardScaler

        from fraudops.modeling.model import build_estimator

        self.numeric = numeric
        self.encoders = {c: LabelEncoder().fit(train[c].fillna("unknown").astype(str)) for c in SEED_CATEGORICALS}
        matrix = np.column_stack([train[numeric].to_numpy(dtype="float64")]
                                 + [self.encoders[c].transform(train[c].fillna("unknown").astype(str))
                                    for c in SEED_CATEGORICALS])
        self.scaler = StandardScaler().fit(matrix)
        self.model = build_estimator("hist_gradient_boosting", seed=seed).set_params(categorical_features=None)
        self.model.fit(self.scaler.transform(matrix), train["is_fraud"].astype(int))

    def encode_row(self, row: dict) -> list[float]:
        values = [float(row[c]) for c in self.numeric]
        for column in SEED_CATEGORICALS:  # the seed: encoder.transform([value]) per row and column
            try:
                values.append(float(self.encoders[column].transform([str(row[column] or "unknown")])[0]))
            except ValueError:
                values.append(-1.0)
        return values

    def score_and_store(self, featured: pd.DataFrame, engine, table: str) -> int:
        frame = featured.copy()  # the seed's toPandas() of the micro-batch is not even counted
        matrix = np.array([self.encode_row(row) for row in frame.to_dict("records")])
        scores = self.model.predict_proba(self.scaler.transform(matrix))[:, 1]
        frame["fraud_score"] = scores
        frame["is_fraud"] = scores >= 0.5
        frame["scored_at"] = pd.Timestamp.now(tz="UTC")
        keep = ["transaction_id", "user_id", "amount", "currency", "merchant", "transaction_time", "country",
                "transaction_type", "fraud_score", "is_fraud", "scored_at"]
        frame[keep].to_sql(table, engine, if_exists="append", index=False)
        return len(frame)


def kafka_records(messages: list[tuple[str, bytes]], topic: str) -> pd.DataFrame:
    """Messages as the Kafka source hands them to the pass (value, topic, partition, offset, timestamp)."""
    now = pd.Timestamp(datetime.now(UTC)).tz_localize(None)
    return pd.DataFrame({"value": [v for _, v in messages], "topic": topic, "partition": np.int32(0),
                         "offset": np.arange(len(messages), dtype="int64"), "timestamp": now})


def seed_vs_ours(settings, model, rows: int, repeats: int) -> dict:
    from sqlalchemy import create_engine

    from features.batch import compute_features
    from features.definition import NUMERIC_FEATURES
    from fraudops.contract.messages import validate_messages_frame
    from streaming.scoring_job import JobOptions, feature_store_target, sink_targets
    from streaming.scoring_pass import PassInputs, process_records
    from streaming.sinks import pg_connect

    name = run_id()
    ns = create_namespace(settings, name, 1, scratch=Path(tempfile.gettempdir()))
    messages = MessageStream(2_000, expected=rows, seed=7).take(rows)
    records = kafka_records(messages, ns.topic)
    try:
        options = JobOptions(checkpoint_dir=ns.checkpoint_dir, pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                             alerts_topic=ns.alerts_topic)
        targets = sink_targets(settings, options)
        inputs = PassInputs(targets, feature_store_target(settings, options), served_model(settings, model),
                            settings.mlflow_tracking_uri)
        featured = compute_features(validate_messages_frame([v for _, v in messages]).drop(columns="reject_reason"),
                                    use_history_labels=False)
        seed = SeedScorer(model.featured, list(NUMERIC_FEATURES))
        engine = create_engine("postgresql+psycopg2://", creator=lambda: pg_connect(targets))
        reset = _truncate(settings, ns.pg_schema)
        process_records(records.head(100), inputs)  # warm: model and connections, as a warm worker has them
        ours_runs, seed_runs = [], []
        for _ in range(repeats):
            reset()
            started = time.perf_counter()
            process_records(records, inputs)
            ours_runs.append(time.perf_counter() - started)
            started = time.perf_counter()
            seed.score_and_store(featured, engine, "transactions_seed")
            seed_runs.append(time.perf_counter() - started)
        engine.dispose()
    finally:
        drop_namespace(settings, ns)
    ours, seed_seconds = min(ours_runs), min(seed_runs)
    return {"rows": rows, "ours_seconds": round(ours, 3), "seed_seconds": round(seed_seconds, 3),
            "ratio_seed_to_ours": round(seed_seconds / ours, 2), "ours_rows_per_second": round(rows / ours),
            "seed_rows_per_second": round(rows / seed_seconds),
            "ours_all_runs": [round(v, 3) for v in ours_runs], "seed_all_runs": [round(v, 3) for v in seed_runs]}


def _truncate(settings, schema: str):
    """A function emptying the run's tables, so each repeat inserts (not skips) its rows."""
    from fraudops.db import connect

    def reset() -> None:
        conn = connect(settings)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f'TRUNCATE "{schema}".transactions, "{schema}".fraud_alerts CASCADE')
                cur.execute(f'DROP TABLE IF EXISTS "{schema}".transactions_seed')
        finally:
            conn.close()

    return reset


# ---------------------------------------------------------------- 3. batch cost vs users in the store

class PrivateRedis:
    """A redis-server of this benchmark only (no persistence), stopped by its PID."""

    def __init__(self):
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self):
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


def _fill_users(client, prefix: str, first: int, count: int) -> None:
    """``count`` more distinct users with one old event each (only the number of keys matters)."""
    member = "1700000000000000\x1fFILL\x1f1.0\x1fUS\x1fM\x1f"
    for start in range(first, first + count, 50_000):
        pipe = client.pipeline(transaction=False)
        for user in range(start, min(first + count, start + 50_000)):
            pipe.zadd(f"{prefix}fs:user:FILL{user}", {member: 1_700_000_000_000_000})
        pipe.execute()


def batch_cost_vs_users(repeats: int, batch_rows: int = 10_000, small: int = 10_000, large: int = 1_000_000) -> dict:
    """The same batch's feature step with ``small`` and then ``large`` distinct users in the store."""
    from features.online import FeatureStore
    from features.stream import remember_events, stream_features
    from simulator.generator import generate_history

    history = generate_history(days=30, customers=2_000, seed=11)
    history = history.sort_values(["transaction_time", "transaction_id"]).reset_index(drop=True)
    earlier, batch = history.iloc[:-batch_rows], history.iloc[-batch_rows:]
    server = PrivateRedis()
    try:
        store = FeatureStore(server.client(), prefix="bench:")
        for start in range(0, len(earlier), 20_000):
            remember_events(store, earlier.iloc[start:start + 20_000])
        users_with_history = int(earlier["user_id"].nunique())
        _fill_users(store.client, store.prefix, 0, small - users_with_history)

        def step():
            stream_features(batch, store)
            remember_events(store, batch)

        step()  # the batch's own events are then in the store, as in a replay: same work each time
        small_seconds = best_of(repeats, step)
        small_keys = store.client.dbsize()
        _fill_users(store.client, store.prefix, small, large - small_keys)
        large_seconds = best_of(repeats, step)
        large_keys = store.client.dbsize()
    finally:
        server.stop()
    return {"batch_rows": batch_rows, "batch_users": int(batch["user_id"].nunique()),
            "users_small": small_keys, "users_large": large_keys, "seconds_small": round(small_seconds, 3),
            "seconds_large": round(large_seconds, 3), "ratio_large_to_small": round(large_seconds / small_seconds, 3)}


def run(settings, rows: int = 20_000, repeats: int = 3, model=None) -> dict:
    """All three comparisons; ``model`` (bench_support.BenchModel) is registered when not given."""
    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    out = {"model": {"name": model.name, "version": model.version, "train_seconds": round(model.train_seconds, 1)}}
    for key, action in (("scoring_stage", lambda: scoring_vs_raw(settings, model, rows, repeats)),
                        ("seed_vs_ours", lambda: seed_vs_ours(settings, model, rows, repeats)),
                        ("batch_cost_vs_users", lambda: batch_cost_vs_users(repeats))):
        load_before = machine_load()
        out[key] = action()
        out[key]["load"] = {"before": load_before, "after": machine_load()}
    return out


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the micro-batch")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (best is kept)")
    args = parser.parse_args(argv)
    results = run(load_settings(), args.rows, args.repeats)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
