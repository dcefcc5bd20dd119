"""The scoring job through service outages: PostgreSQL down for 30 s, Redis down, a Kafka broker
restart. Each test starts a PRIVATE instance of the service it breaks (own folder, free ports;
devstack.stack) and points the job at it; the shared stack is never touched.

Expected (issue 5 and streaming/sinks.py):
* PostgreSQL down: batches fail, the supervisor restarts the queries from their checkpoints
  with a growing pause; the job never exits; once PostgreSQL is back every row arrives once.
* The online feature store (its own Redis) down: the same as PostgreSQL.
* Redis down: alerts still reach PostgreSQL; the missed ones are counted, audit_log gets
  redis_gap_started, and once Redis answers again they are copied over (redis_gap_closed).
* Kafka broker restart: the job reconnects (or restarts from its checkpoint); every row once.

SIGKILL of the job itself: tests/e2e/test_scoring_job_process.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from fraudops.contract.messages import serialize_message
from fraudops.db import apply_migrations, connect
from fraudops.kafka_io import ensure_topics
from tests import streaming_support as support
from tests.polling import assert_eventually
from tests.reliability.reliability_support import (
    drain,
    job_options,
    private_service,
    start_and_process,
    stop_process_group,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1800)]  # waits of 400 s + 600 s
OUTAGE_SECONDS = 30


def namespace_on(pg_conn, settings, unique_name: str, tmp_path, partitions: int = 2) -> support.Namespace:
    """Schema on ``pg_conn``'s server, topics on ``settings``' broker (either may be private)."""
    ns = support.Namespace(pg_schema=f"s_{unique_name}", redis_prefix=f"{unique_name}:", topic=f"tx-{unique_name}",
                           labels_topic=f"labels-{unique_name}", alerts_topic=f"alerts-{unique_name}",
                           checkpoint_dir=tmp_path / "checkpoints")
    apply_migrations(pg_conn, ns.pg_schema)
    ensure_topics(settings, {ns.topic: partitions, ns.labels_topic: 1, ns.alerts_topic: 1})
    return ns


def history_messages(history, start: int, stop: int) -> list[tuple[bytes, bytes]]:
    rows = history.iloc[start:stop].to_dict("records")
    return [(r["user_id"].encode(), serialize_message(r)) for r in rows]


def totals(pg_conn, ns) -> tuple[int, int]:
    """(rows, distinct transaction_ids) in the namespace's transactions table."""
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT transaction_id) FROM "{ns.pg_schema}".transactions')
        result = cur.fetchone()
    pg_conn.rollback()
    return result


def reconnecting_count(settings, ns) -> int:
    """Rows scored so far, on a fresh connection (the server may have restarted since)."""
    conn = connect(settings, timeout=3)
    try:
        return totals(conn, ns)[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def history():
    return support.small_history(days=8, customers=200, seed=23)


@pytest.fixture(scope="module")
def model_name(settings, history):
    name = f"fraud-detector-outage-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history)
    return name


def test_postgres_down_for_30_seconds_then_back_loses_and_doubles_nothing(settings, history, model_name,
                                                                        unique_name, tmp_path):
    with private_service("postgres") as pg:
        pg_settings = pg.settings(settings)
        conn = connect(pg_settings)
        ns = namespace_on(conn, settings, unique_name, tmp_path)
        n = 1200
        support.produce(settings, ns.topic, history_messages(history, 0, n // 2))
        log_path = tmp_path / "job.log"
        job = support.spark_submit(ns, model_name, log_path, env=pg.env())
        try:
            assert_eventually(lambda: totals(conn, ns)[0] > 0, timeout=400, interval=0.5,
                              message=f"first rows scored (log {log_path})")
            conn.close()
            pg.stop("postgres")
            support.produce(settings, ns.topic, history_messages(history, n // 2, n))
            time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a result
            assert job.poll() is None, "the job exited while PostgreSQL was down:\n" + log_path.read_text()[-3000:]
            pg.start("postgres")
            assert_eventually(lambda: reconnecting_count(pg_settings, ns) >= n, timeout=600, interval=1.0,
                              message=f"all rows scored after PostgreSQL came back (log {log_path})")
        finally:
            code = stop_process_group(job)
        conn = connect(pg_settings)
        try:
            assert totals(conn, ns) == (n, n)
            assert support.count(conn, ns, "quarantine") == 0
        finally:
            conn.close()
    assert code in (0, 143), log_path.read_text()[-3000:]
    log = log_path.read_text()
    assert "restarting from the checkpoints" in log, "the outage never failed a batch: nothing was tested"


def test_feature_store_down_for_30_seconds_then_back_loses_and_doubles_nothing(settings, pg_conn, history, model_name,
                                                                             unique_name, tmp_path):
    """Like PostgreSQL: batches fail while the online feature store is down, the supervisor
    restarts the queries from their checkpoints, and once it is back every row arrives once."""
    with private_service("feature-store") as store:
        ns = namespace_on(pg_conn, settings, unique_name, tmp_path)
        n = 1200
        support.produce(settings, ns.topic, history_messages(history, 0, n // 2))
        log_path = tmp_path / "job.log"
        job = support.spark_submit(ns, model_name, log_path, env=store.env())
        try:
            assert_eventually(lambda: totals(pg_conn, ns)[0] > 0, timeout=400, interval=0.5,
                              message=f"first rows scored (log {log_path})")
            store.stop("feature-store")
            support.produce(settings, ns.topic, history_messages(history, n // 2, n))
            time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a result
            assert job.poll() is None, "the job exited while the feature store was down:\n" + log_path.read_text()[-3000:]
            store.start("feature-store")
            assert_eventually(lambda: totals(pg_conn, ns)[0] >= n, timeout=600, interval=1.0,
                              message=f"all rows scored after the feature store came back (log {log_path})")
        finally:
            code = stop_process_group(job)
    assert totals(pg_conn, ns) == (n, n)
    assert support.count(pg_conn, ns, "quarantine") == 0
    assert code in (0, 143), log_path.read_text()[-3000:]
    assert "restarting from the checkpoints" in log_path.read_text(), "the outage never failed a batch"
    support.drop_namespace(pg_conn, ns)


def test_kafka_broker_restart_mid_stream_loses_and_doubles_nothing(settings, pg_conn, history, model_name,
                                                                 unique_name, tmp_path):
    with private_service("kafka") as kafka:
        kafka_settings = kafka.settings(settings)
        ns = namespace_on(pg_conn, kafka_settings, unique_name, tmp_path)
        n = 1200
        support.produce(kafka_settings, ns.topic, history_messages(history, 0, n // 2))
        log_path = tmp_path / "job.log"
        job = support.spark_submit(ns, model_name, log_path, env=kafka.env())
        try:
            assert_eventually(lambda: totals(pg_conn, ns)[0] > 0, timeout=400, interval=0.5,
                              message=f"first rows scored (log {log_path})")
            kafka.stop("kafka")
            time.sleep(10)  # the broker is away for a while, not a wait for a result
            kafka.start("kafka")
            support.produce(kafka_settings, ns.topic, history_messages(history, n // 2, n))
            assert_eventually(lambda: totals(pg_conn, ns)[0] >= n, timeout=600, interval=1.0,
                              message=f"all rows scored after the broker restart (log {log_path})")
            assert job.poll() is None, log_path.read_text()[-3000:]
        finally:
            code = stop_process_group(job)
    assert totals(pg_conn, ns) == (n, n)
    assert support.count(pg_conn, ns, "quarantine") == 0
    assert code in (0, 143), log_path.read_text()[-3000:]
    support.drop_namespace(pg_conn, ns)


# ---------------------------------------------------------------- Redis

@pytest.fixture(scope="module")
def alert_everything_model(settings, history):
    """Threshold 0: every transaction is an alert, so each batch exercises the Redis sink."""
    name = f"fraud-detector-redis-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history, threshold=0.0)
    return name


def audit_events(pg_conn, ns) -> list[str]:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT event_type FROM "{ns.pg_schema}".audit_log WHERE event_type LIKE %s ORDER BY audit_id',
                    ("redis_gap%",))
        events = [r[0] for r in cur.fetchall()]
    pg_conn.rollback()
    return events


def redis_alert_ids(client, ns) -> set[str]:
    prefix = f"{ns.redis_prefix}fraud_alert:"
    return {key.decode().removeprefix(prefix) for key in client.scan_iter(f"{prefix}*", count=1000)}


def alert_ids(pg_conn, ns) -> set[str]:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT transaction_id FROM "{ns.pg_schema}".fraud_alerts')
        ids = {r[0] for r in cur.fetchall()}
    pg_conn.rollback()
    return ids


@pytest.fixture
def redis_namespace(pg_conn, settings, unique_name, tmp_path):
    ns = namespace_on(pg_conn, settings, unique_name, tmp_path, partitions=1)
    yield ns
    support.drop_namespace(pg_conn, ns)


def test_redis_down_alerts_reach_postgres_and_redis_catches_up(spark, settings, pg_conn, history,
                                                              alert_everything_model, redis_namespace):
    import redis

    ns = redis_namespace
    with private_service("redis") as private:
        redis_settings = private.settings(settings)
        client = redis.Redis(host="127.0.0.1", port=redis_settings.redis_port, password=redis_settings.redis_password)
        support.produce(settings, ns.topic, history_messages(history, 0, 20))
        job = start_and_process(spark, redis_settings, job_options(ns, alert_everything_model))
        try:
            assert redis_alert_ids(client, ns) == alert_ids(pg_conn, ns) and len(alert_ids(pg_conn, ns)) == 20

            private.stop("redis")
            support.produce(settings, ns.topic, history_messages(history, 20, 40))
            job.process_all_available()
            assert len(alert_ids(pg_conn, ns)) == 40, "alerts must reach PostgreSQL while Redis is down"
            assert audit_events(pg_conn, ns) == ["redis_gap_started"]

            private.start("redis")
            support.produce(settings, ns.topic, history_messages(history, 40, 60))
            job.process_all_available()
        finally:
            job.stop()
        assert not job.failures(), [str(q.exception())[:500] for q in job.failures()]
        assert audit_events(pg_conn, ns) == ["redis_gap_started", "redis_gap_closed"]
        in_postgres = alert_ids(pg_conn, ns)
        assert len(in_postgres) == 60 and redis_alert_ids(client, ns) == in_postgres
        assert client.zcard(f"{ns.redis_prefix}recent_fraud_alerts") == 60
        payload = json.loads(client.get(f"{ns.redis_prefix}fraud_alert:{sorted(in_postgres)[0]}"))
        assert payload["transaction_id"] == sorted(in_postgres)[0]
        client.close()
    assert support.count(pg_conn, ns, "transactions") == 60


def test_redis_gap_survives_a_job_restart(spark, settings, pg_conn, history, alert_everything_model,
                                          redis_namespace):
    import redis

    ns = redis_namespace
    with private_service("redis") as private:
        redis_settings = private.settings(settings)
        options = job_options(ns, alert_everything_model)
        private.stop("redis")
        support.produce(settings, ns.topic, history_messages(history, 0, 10))
        assert not drain(spark, redis_settings, options)
        private.start("redis")
        support.produce(settings, ns.topic, history_messages(history, 10, 20))
        assert not drain(spark, redis_settings, options)  # a new run of the job, Redis is back
        client = redis.Redis(host="127.0.0.1", port=redis_settings.redis_port, password=redis_settings.redis_password)
        try:
            assert redis_alert_ids(client, ns) == alert_ids(pg_conn, ns)
        finally:
            client.close()
