"""The scoring job on a real cluster: Spark standalone (master + 2 workers) and a 3-node Kafka
KRaft cluster (devstack/cluster.py, what `make cluster-up` starts), with one Spark worker and one
Kafka broker SIGKILLed mid-stream. Every transaction must be in PostgreSQL exactly once, and every
alert once (PostgreSQL), in Redis, and on the cluster's alerts topic.

The cluster here is private (its own folder and free ports, so a cluster started by `make
cluster-up` is never touched); the job is started with the same spark-submit line as `make
stream-cluster` (devstack.cluster.spark_submit_args: --master spark://127.0.0.1:<port>, one
executor per worker) and keeps the shared stack's PostgreSQL, Redis and MLflow.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from devstack import cluster
from fraudops.contract.messages import serialize_message
from fraudops.db import apply_migrations
from tests import streaming_support as support
from tests.polling import assert_eventually
from tests.reliability.reliability_support import free_port, stop_process_group

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 1000  # half before the kills, half after
MAX_OFFSETS = 150  # several micro-batches, so that the kills land mid-stream


@pytest.fixture(scope="module")
def spark_kafka_cluster(tmp_path_factory):
    """A private cluster, up for this module, stopped (nothing left running) afterwards."""
    state = tmp_path_factory.mktemp("cluster")
    cfg = cluster.ClusterConfig(
        state=state,
        kafka_ports=tuple(free_port() for _ in range(cluster.KAFKA_NODES)),
        controller_ports=tuple(free_port() for _ in range(cluster.KAFKA_NODES)),
        spark_port=free_port(), spark_ui_port=free_port(),
        worker_ui_ports=tuple(free_port() for _ in range(cluster.SPARK_WORKERS)),
    )
    started = time.monotonic()
    try:
        cluster.up(cfg, topics={})
        print(f"\ncluster up in {time.monotonic() - started:.1f}s")
        yield cfg
    finally:
        cluster.down(cfg)
    assert cluster.running(cfg) == {}, "cluster processes left running after down"


def cluster_namespace(pg_conn, cfg, unique_name: str, tmp_path) -> support.Namespace:
    """The test's schema and Redis prefix on the shared stack, its topics on the cluster (RF 3)."""
    ns = support.Namespace(pg_schema=f"s_{unique_name}", redis_prefix=f"{unique_name}:", topic=f"tx-{unique_name}",
                           labels_topic=f"labels-{unique_name}", alerts_topic=f"alerts-{unique_name}",
                           checkpoint_dir=tmp_path / "checkpoints")
    apply_migrations(pg_conn, ns.pg_schema)
    cluster.create_topics(cfg, {ns.topic: 4, ns.labels_topic: 1, ns.alerts_topic: 1})
    return ns


def stored(pg_conn, ns, table: str) -> tuple[int, set[str]]:
    """(rows, distinct transaction_ids) of ``table`` in the namespace."""
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT transaction_id FROM "{ns.pg_schema}".{table}')
        ids = [r[0] for r in cur.fetchall()]
    pg_conn.rollback()
    return len(ids), set(ids)


@pytest.mark.timeout(900)
def test_cluster_run_survives_a_dead_worker_and_a_dead_broker_exactly_once(
        settings, pg_conn, redis_client, spark_kafka_cluster, unique_name, tmp_path):
    cfg = spark_kafka_cluster
    cluster_settings = dataclasses.replace(settings, kafka_brokers=cfg.kafka_brokers)
    history = support.small_history(days=8, customers=200, seed=31)
    model_name = f"fraud-detector-cluster-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, model_name, history, threshold=0.0)  # every row is an alert
    ns = cluster_namespace(pg_conn, cfg, unique_name, tmp_path)
    messages = [(r["user_id"].encode(), serialize_message(r)) for r in history.head(ROWS).to_dict("records")]
    ids = {r["transaction_id"] for r in history.head(ROWS).to_dict("records")}
    support.produce(cluster_settings, ns.topic, messages[: ROWS // 2])

    log_path = tmp_path / "job.log"
    submitted = time.monotonic()
    job = support.spark_submit(ns, model_name, log_path, env={"KAFKA_BROKERS": cfg.kafka_brokers},
                               max_offsets=MAX_OFFSETS, master_args=cluster.spark_submit_args(cfg))
    try:
        # a job that exits (e.g. at start) ends the wait at once instead of after the timeout
        assert_eventually(lambda: job.poll() is not None or stored(pg_conn, ns, "transactions")[0] > 0,
                          timeout=400, interval=0.5, message=f"first rows scored on the cluster (log {log_path})")
        assert job.poll() is None, "the job exited:\n" + log_path.read_text()[-3000:]
        print(f"first scored row {time.monotonic() - submitted:.1f}s after spark-submit")

        # a machine failure: the worker with its executor and Python workers, and the broker that
        # leads the alerts topic (the job's sink must move to a new leader; it also leads input partitions)
        cluster.kill(cfg, cfg.spark_worker(1))
        victim = cluster.partition_leaders(cfg, ns.alerts_topic)[0]
        cluster.kill(cfg, cfg.kafka_node(victim))
        killed_at = stored(pg_conn, ns, "transactions")[0]
        killed = time.monotonic()
        support.produce(cluster_settings, ns.topic, messages[ROWS // 2:])  # acks=all: 2 in-sync replicas left

        assert_eventually(lambda: job.poll() is not None or stored(pg_conn, ns, "transactions")[0] >= ROWS,
                          timeout=600, interval=1.0, message=f"all rows scored after the kills (log {log_path})")
        print(f"all {ROWS} rows {time.monotonic() - killed:.1f}s after the kills ({killed_at} before)")
        assert job.poll() is None, log_path.read_text()[-3000:]
        assert cluster.spark_workers_alive(cfg) == cluster.SPARK_WORKERS - 1
        assert cluster.kafka_brokers_alive(cfg) == cluster.KAFKA_NODES - 1
    finally:
        code = stop_process_group(job)
    assert code in (0, 143), log_path.read_text()[-3000:]
    # half of the rows reached Kafka only after the kills: the run did go on without them
    print(f"rows stored when the worker and broker {victim} died: {killed_at}")
    assert "Lost executor" in log_path.read_text(), "the dead worker's executor was never lost: nothing was tested"

    assert stored(pg_conn, ns, "transactions") == (ROWS, ids)
    assert stored(pg_conn, ns, "fraud_alerts") == (ROWS, ids)
    assert support.count(pg_conn, ns, "quarantine") == 0
    prefix = f"{ns.redis_prefix}fraud_alert:"
    in_redis = {str(key).removeprefix(prefix) for key in redis_client.scan_iter(f"{prefix}*", count=1000)}
    assert in_redis == ids
    published = support.consume_all(cluster_settings, ns.alerts_topic, f"g-{unique_name}", expected=ROWS)
    assert {m.key().decode() for m in published} == ids  # at least once on Kafka (replays may repeat)
    for key in redis_client.scan_iter(f"{ns.redis_prefix}*", count=1000):
        redis_client.delete(key)
    support.drop_namespace(pg_conn, ns)
