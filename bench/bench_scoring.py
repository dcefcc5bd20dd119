"""Benchmark of the scoring stage and of the whole micro-batch handler, in one Spark session.

Reads:  simulated history (simulator.generator) turned into featured rows (features.batch), a
        model registered for the run (MLflow), the local stack for the sinks.
Writes: its own PostgreSQL schema / Redis prefix / alerts topic (removed afterwards); results
        returned to bench.run or printed.
Run:    .venv/bin/python -m bench.bench_scoring [--rows 20000] [--repeats 3]

Two comparisons on the same rows:
1. scoring stage vs raw model: ``pipeline.predict_proba`` in-process on a prepared pandas frame
   with one thread (the floor; FraudModel.predict limits OpenMP to one thread per Spark task, and
   on a loaded machine OpenMP's default threads only contend), the registry pyfunc's ``predict``
   in-process, and the job's scoring stage
   (streaming.model_server.ModelServer.score: mlflow spark_udf over Arrow) on a cached Spark
   DataFrame, forced with the noop sink. Ratio = scoring stage / raw predict_proba.
2. one micro-batch end to end, the seed's way vs ours: toPandas, a LabelEncoder applied row by
   row, StandardScaler, predict, pandas.to_sql append (the seed's consumer) against
   streaming.batch_handlers.ScoringBatchWriter (merchant risk, the Production model as a pandas
   UDF, COPY upserts of transactions and alerts, Redis, the alerts topic, metrics).
   Ratio = seed / ours. Both see the same featured micro-batch (feature computation excluded).
Best of ``repeats`` for each timing (the machine is shared: the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_support import create_namespace, drop_namespace, machine_load, register_model, run_id

SEED_CATEGORICALS = ["currency", "country", "merchant_category", "transaction_type", "channel"]


def best_of(repeats: int, action) -> float:
    """The shortest wall time of ``repeats`` calls of ``action()``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def micro_batch(featured: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The last ``rows`` featured transactions with the Kafka columns the job carries."""
    from features.definition import FEATURE_COLUMNS
    from fraudops.contract.messages import TRANSACTION_COLUMNS

    batch = featured.tail(rows).reset_index(drop=True)
    out = batch[[c for c in TRANSACTION_COLUMNS if c in batch.columns]].copy()
    for name in FEATURE_COLUMNS:
        out[name] = batch[name].to_numpy()
    out["kafka_topic"] = "bench"
    out["kafka_partition"] = np.int32(0)
    out["kafka_offset"] = np.arange(len(out), dtype="int64")
    out["produced_at"] = pd.Timestamp(datetime.now(UTC))
    return out


# ---------------------------------------------------------------- 1. scoring stage vs raw predict

def scoring_stage_vs_raw(spark, settings, model, batch: pd.DataFrame, repeats: int) -> dict:
    import mlflow.pyfunc
    from threadpoolctl import threadpool_limits

    from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from fraudops.modeling.model import fraud_probability, prepare_model_input
    from fraudops.modeling.registry import configure_tracking
    from streaming.model_server import ModelServer

    configure_tracking(settings)
    prepared = prepare_model_input(batch, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    raw_default_threads = best_of(repeats, lambda: fraud_probability(model.pipeline, prepared))
    with threadpool_limits(limits=1):  # as FraudModel.predict runs it: one thread per Spark task
        raw_seconds = best_of(repeats, lambda: fraud_probability(model.pipeline, prepared))
        raw_with_prepare = best_of(repeats, lambda: fraud_probability(
            model.pipeline, prepare_model_input(batch, NUMERIC_FEATURES, CATEGORICAL_FEATURES)))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model.name}/{model.version}")
    pyfunc_seconds = best_of(repeats, lambda: pyfunc.predict(prepared))

    server = ModelServer(spark, f"models:/{model.name}/Production", settings)
    server.start()
    frame = spark.createDataFrame(batch).cache()
    frame.count()
    scored = server.score(frame).select("fraud_score")
    spark_seconds = best_of(repeats, lambda: scored.write.format("noop").mode("overwrite").save())
    passthrough = frame.select("amount")
    spark_floor = best_of(repeats, lambda: passthrough.write.format("noop").mode("overwrite").save())
    direct = frame.mapInPandas(_direct_scorer(f"models:/{model.name}/{model.version}", settings.mlflow_tracking_uri),
                               "fraud_score double")
    direct_seconds = best_of(repeats, lambda: direct.write.format("noop").mode("overwrite").save())
    check = np.sort(np.asarray(server.score(frame).select("fraud_score").toPandas()["fraud_score"]))
    expected = np.sort(fraud_probability(model.pipeline, prepared))
    frame.unpersist()
    return {"rows": len(batch), "raw_predict_proba_seconds": round(raw_seconds, 4),
            "raw_predict_proba_default_threads_seconds": round(raw_default_threads, 4),
            "raw_with_input_preparation_seconds": round(raw_with_prepare, 4),
            "pyfunc_in_process_seconds": round(pyfunc_seconds, 4),
            "spark_scoring_stage_seconds": round(spark_seconds, 4),
            "spark_passthrough_seconds": round(spark_floor, 4),
            "spark_mapinpandas_pyfunc_seconds": round(direct_seconds, 4),
            "ratio_mapinpandas_to_raw": round(direct_seconds / raw_seconds, 2),
            "ratio_stage_to_raw": round(spark_seconds / raw_seconds, 2),
            "ratio_pyfunc_to_raw": round(pyfunc_seconds / raw_seconds, 2),
            "scores_equal_raw": bool(np.allclose(check, expected)),
            "raw_rows_per_second": round(len(batch) / raw_seconds),
            "stage_rows_per_second": round(len(batch) / spark_seconds)}


def _direct_scorer(model_uri: str, tracking_uri: str):
    """Prototype of a leaner scoring stage: mapInPandas over the feature columns, the registry
    pyfunc loaded once per Python worker (no struct column, no spark_udf wrapper)."""
    from features.definition import FEATURE_COLUMNS

    def score(chunks):
        import mlflow.pyfunc

        from bench import bench_scoring  # the worker's module: its cache outlives this task

        loaded = bench_scoring.WORKER_MODELS.get(model_uri)
        if loaded is None:
            mlflow.set_tracking_uri(tracking_uri)
            loaded = bench_scoring.WORKER_MODELS[model_uri] = mlflow.pyfunc.load_model(model_uri)
        for chunk in chunks:
            yield pd.DataFrame({"fraud_score": loaded.predict(chunk[FEATURE_COLUMNS])})

    return score


WORKER_MODELS: dict = {}  # per Python worker process: models:/ URI -> loaded pyfunc


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

    def score_and_store(self, batch_df, engine, table: str) -> int:
        frame = batch_df.toPandas()
        matrix = np.array([self.encode_row(row) for row in frame.to_dict("records")])
        scores = self.model.predict_proba(self.scaler.transform(matrix))[:, 1]
        frame["fraud_score"] = scores
        frame["is_fraud"] = scores >= 0.5
        frame["scored_at"] = pd.Timestamp.now(tz="UTC")
        keep = ["transaction_id", "user_id", "amount", "currency", "merchant", "transaction_time", "country",
                "transaction_type", "fraud_score", "is_fraud", "scored_at"]
        frame[keep].to_sql(table, engine, if_exists="append", index=False)
        return len(frame)


def seed_vs_ours(spark, settings, model, batch: pd.DataFrame, repeats: int) -> dict:
    from sqlalchemy import create_engine

    from features.definition import NUMERIC_FEATURES
    from fraudops.db import connect
    from streaming.batch_handlers import ScoringBatchWriter
    from streaming.merchant_risk import MerchantRiskCache
    from streaming.model_server import ModelServer
    from streaming.scoring_job import JobOptions, sink_targets
    from streaming.sinks import pg_connect

    name = run_id()
    ns = create_namespace(settings, name, 1, scratch=Path(tempfile.gettempdir()))
    try:
        options = JobOptions(checkpoint_dir=ns.checkpoint_dir, pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                             alerts_topic=ns.alerts_topic, model_uri=f"models:/{model.name}/Production")
        targets = sink_targets(settings, options)
        server = ModelServer(spark, options.model_uri, settings, refresh_seconds=3600)
        server.start()
        writer = ScoringBatchWriter(server, MerchantRiskCache(spark, targets, refresh_seconds=3600), targets)
        seed = SeedScorer(model.featured, list(NUMERIC_FEATURES))
        engine = create_engine("postgresql+psycopg2://", creator=lambda: pg_connect(targets))
        frame = spark.createDataFrame(batch).cache()
        frame.count()
        reset = _truncate(settings, ns.pg_schema)
        ours_runs, seed_runs = [], []
        for _ in range(repeats):
            reset()
            started = time.perf_counter()
            writer(frame, len(ours_runs))
            ours_runs.append(time.perf_counter() - started)
            started = time.perf_counter()
            seed.score_and_store(frame, engine, "transactions_seed")
            seed_runs.append(time.perf_counter() - started)
        conn = connect(settings)
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{ns.pg_schema}".transactions')
            stored = cur.fetchone()[0]
        conn.close()
        frame.unpersist()
        engine.dispose()
    finally:
        drop_namespace(settings, ns)
    ours, seed_seconds = min(ours_runs), min(seed_runs)
    return {"rows": len(batch), "ours_seconds": round(ours, 3), "seed_seconds": round(seed_seconds, 3),
            "ratio_seed_to_ours": round(seed_seconds / ours, 2), "ours_rows_per_second": round(len(batch) / ours),
            "seed_rows_per_second": round(len(batch) / seed_seconds), "ours_rows_stored": int(stored),
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


def run(settings, rows: int = 20_000, repeats: int = 3, model=None) -> dict:
    """Both comparisons; ``model`` (bench_support.BenchModel) is registered when not given."""
    from fraudops.spark_session import build_spark_session

    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    batch = micro_batch(model.featured, rows)
    spark = build_spark_session("bench-scoring", master="local[2]", shuffle_partitions=2)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        load_before = machine_load()
        stage = scoring_stage_vs_raw(spark, settings, model, batch, repeats)
        stage["load"] = {"before": load_before, "after": machine_load()}
        load_before = machine_load()
        batch_cmp = seed_vs_ours(spark, settings, model, batch, repeats)
        batch_cmp["load"] = {"before": load_before, "after": machine_load()}
    finally:
        spark.stop()
    return {"model": {"name": model.name, "version": model.version, "train_seconds": round(model.train_seconds, 1)},
            "scoring_stage": stage, "seed_vs_ours": batch_cmp}


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
