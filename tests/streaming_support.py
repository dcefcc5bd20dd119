"""Helpers for the streaming job's tests: a small registered model, an isolated namespace
(PostgreSQL schema, Redis key prefix, Kafka topics, checkpoint folder) and Kafka I/O."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.batch import compute_features
from features.definition import CATEGORICAL_FEATURES, FEATURE_SET_VERSION, NUMERIC_FEATURES
from fraudops.db import apply_migrations
from simulator.generator import generate_history


@dataclass(frozen=True)
class Namespace:
    """Everything one streaming test writes to, unique to that test."""

    pg_schema: str
    redis_prefix: str
    topic: str
    labels_topic: str
    alerts_topic: str
    checkpoint_dir: Path
    decisions_topic: str = ""  # the decision service's topic of this test ("": the job reads none)


def small_history(days: int = 6, customers: int = 150, seed: int = 7) -> pd.DataFrame:
    return generate_history(days=days, customers=customers, fraud_ratio=0.03, seed=seed)


def train_and_register(settings, model_name: str, history: pd.DataFrame, seed: int = 0,
                       threshold: float = 0.5) -> str:
    """Fit a small HistGradientBoosting model on ``history``, log it as the FraudModel pyfunc,
    register it under ``model_name`` and make it Production. Returns the version number."""
    import mlflow

    from fraudops.modeling.model import ModelMetadata, build_pipeline, log_fraud_model, prepare_model_input
    from fraudops.modeling.registry import (
        TAG_FEATURE_SET_VERSION,
        TAG_THRESHOLD,
        configure_tracking,
        promote_to_production,
        register_model_version,
    )

    configure_tracking(settings)
    featured = compute_features(history)
    x = prepare_model_input(featured, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    pipeline = build_pipeline("hist_gradient_boosting", NUMERIC_FEATURES, CATEGORICAL_FEATURES,
                              params={"max_iter": 30}, seed=seed)
    pipeline.fit(x, featured["is_fraud"].astype(int))
    metadata = ModelMetadata(decision_threshold=threshold, threshold_objective="fixed_for_test",
                             feature_set_version=FEATURE_SET_VERSION,
                             numeric_features=tuple(NUMERIC_FEATURES),
                             categorical_features=tuple(CATEGORICAL_FEATURES),
                             model_type="hist_gradient_boosting")
    mlflow.set_experiment(f"tests-{model_name}")
    with mlflow.start_run() as run:
        info = log_fraud_model(pipeline, metadata, x.head(5))
    version = register_model_version(info.model_uri, model_name,
                                     {TAG_THRESHOLD: threshold, TAG_FEATURE_SET_VERSION: FEATURE_SET_VERSION},
                                     run_id=run.info.run_id)
    promote_to_production(model_name, version.version)
    return str(version.version)


def make_namespace(pg_conn, settings, unique_name: str, tmp_path: Path, partitions: int = 2) -> Namespace:
    from confluent_kafka.admin import AdminClient, NewTopic

    ns = Namespace(pg_schema=f"s_{unique_name}", redis_prefix=f"{unique_name}:",
                   topic=f"tx-{unique_name}", labels_topic=f"labels-{unique_name}",
                   alerts_topic=f"alerts-{unique_name}", checkpoint_dir=tmp_path / "checkpoints",
                   decisions_topic=f"decisions-{unique_name}")
    apply_migrations(pg_conn, ns.pg_schema)
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    futures = admin.create_topics([NewTopic(ns.topic, partitions, 1), NewTopic(ns.labels_topic, 1, 1),
                                   NewTopic(ns.alerts_topic, 1, 1), NewTopic(ns.decisions_topic, partitions, 1)])
    for future in futures.values():
        future.result(timeout=30)
    return ns


def drop_namespace(pg_conn, ns: Namespace, attempts: int = 5) -> None:
    """Drop the test's schema; a writer still finishing (the job's metrics thread after stop)
    can deadlock with DROP ... CASCADE: PostgreSQL aborts one side, and the drop is retried."""
    import psycopg2.errors

    for attempt in range(attempts):
        pg_conn.rollback()
        try:
            with pg_conn, pg_conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{ns.pg_schema}" CASCADE')
            return
        except psycopg2.errors.DeadlockDetected:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def produce(settings, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) pairs and wait until the broker has them all."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_brokers, "linger.ms": 5,
                         "message.max.bytes": 16 * 1024 * 1024})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(60) == 0, "messages not delivered"


def consume_all(settings, topic: str, group: str, expected: int, timeout: float = 60.0) -> list:
    from confluent_kafka import Consumer

    from tests.polling import assert_eventually

    consumer = Consumer({"bootstrap.servers": settings.kafka_brokers, "group.id": group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received: list = []

    def poll_some():
        for msg in consumer.consume(500, 1.0):
            if msg.error() is None:
                received.append(msg)
        return len(received) >= expected

    try:
        assert_eventually(poll_some, timeout=timeout, interval=0.1, message=f"{expected} messages on {topic}")
    finally:
        consumer.close()
    return received


def count(pg_conn, ns: Namespace, table: str, where: str = "TRUE") -> int:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{ns.pg_schema}".{table} WHERE {where}')
        value = cur.fetchone()[0]
    pg_conn.rollback()
    return value


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` (a spark-submit job) is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


ROOT = Path(__file__).resolve().parents[1]


def spark_submit(ns, model_name: str, log_path: Path, env: dict[str, str] | None = None,
                 max_offsets: int = 300, master_args: tuple[str, ...] | list[str] = ("--master", "local[2]"),
                 ) -> subprocess.Popen:
    """Start streaming/scoring_job.py with spark-submit in its own process group (like users do).
    ``master_args`` replace ``--master local[2]`` (e.g. devstack.cluster.spark_submit_args)."""
    from fraudops.spark_session import driver_java_options, local_job_env, spark_kafka_jars

    jars = spark_kafka_jars()
    assert jars, "Spark Kafka connector jars missing: run `make setup`"
    argv = [str(Path(sys.executable).parent / "spark-submit"), *master_args, *driver_java_options(),
            "--conf", "spark.sql.shuffle.partitions=2", "--jars", ",".join(jars),
            str(ROOT / "streaming" / "scoring_job.py"),
            "--checkpoint-dir", str(ns.checkpoint_dir), "--pg-schema", ns.pg_schema,
            "--redis-prefix", ns.redis_prefix, "--topic", ns.topic, "--labels-topic", ns.labels_topic,
            "--alerts-topic", ns.alerts_topic, "--decisions-topic", getattr(ns, "decisions_topic", ""),
            "--model-uri", f"models:/{model_name}/Production",
            "--max-offsets-per-trigger", str(max_offsets), "--trigger-seconds", "0.5"]
    full_env = local_job_env({**os.environ, **(env or {})})
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
                            start_new_session=True)
