"""The local stack: real Kafka, PostgreSQL, Redis (alert cache, feature store) and MLflow started by
`make stack-up`, each waited for through its readiness check in fraudops.health."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from devstack import stack
from devstack.paths import StackError, StackPaths, stack_paths
from devstack.redis import start_redis
from fraudops import health
from fraudops.db import apply_migrations, migration_files
from tests.polling import assert_eventually

pytestmark = pytest.mark.integration


def test_every_service_is_up(settings):
    statuses = health.check_all(settings)
    assert [s.name for s in statuses] == ["kafka", "postgres", "redis", "feature-store", "mlflow"]
    assert all(s.up for s in statuses), [s.line() for s in statuses]


def test_health_command_exits_zero_when_all_up():
    result = subprocess.run([sys.executable, "-m", "devstack.health"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.strip().splitlines()] == [
        "kafka", "postgres", "redis", "feature-store", "mlflow", "streaming", "decisions"]


def test_stack_up_twice_is_harmless():
    result = subprocess.run([sys.executable, "-m", "devstack.stack", "up"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already running") == len(stack.SERVICE_ORDER)


def test_contract_topics_exist(settings):
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": settings.kafka_brokers}).list_topics(timeout=10).topics
    assert len(topics[settings.kafka_topic].partitions) == 4
    assert settings.kafka_alerts_topic in topics and settings.kafka_labels_topic in topics


def test_message_produced_is_consumed_back(settings, unique_name):
    from confluent_kafka import Consumer, Producer

    topic = f"roundtrip-{unique_name}"
    producer = Producer({"bootstrap.servers": settings.kafka_brokers})
    producer.produce(topic, key=b"USER_1", value=b'{"transaction_id": "TXN_1"}')
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": settings.kafka_brokers, "group.id": unique_name,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        msg = assert_eventually(lambda: _poll_value(consumer), timeout=60, message="message consumed")
    finally:
        consumer.close()
    assert msg.key() == b"USER_1" and msg.value() == b'{"transaction_id": "TXN_1"}'


def _poll_value(consumer):
    msg = consumer.poll(1.0)
    return msg if msg is not None and msg.error() is None else None


def _catalog(conn, schema):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY 1, 2", (schema,))
        return cur.fetchall()


def test_migrations_applied_twice_change_nothing(pg_conn, unique_name):
    schema = f"mig_{unique_name}"
    try:
        first = apply_migrations(pg_conn, schema)
        before = _catalog(pg_conn, schema)
        second = apply_migrations(pg_conn, schema)
        assert first == [p.name for p in migration_files()]
        assert second == []
        assert _catalog(pg_conn, schema) == before
        tables = {row[0] for row in before}
        assert {"transactions", "fraud_alerts", "labels", "quarantine", "monitoring_metrics",
                "audit_log", "fraud_summary", "daily_transaction_stats", "schema_migrations"} <= tables
    finally:
        with pg_conn, pg_conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_seed_queries_work(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("SELECT * FROM fraud_alerts WHERE is_fraud = TRUE ORDER BY detection_time DESC LIMIT 10;")
        cur.fetchall()
        cur.execute("SELECT * FROM fraud_summary;")
        cur.fetchall()
    pg_conn.rollback()


def test_redis_requires_a_password(settings):
    import redis

    client = redis.Redis(host=settings.redis_host, port=settings.redis_port, socket_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_health_reports_stopped_redis_down_then_up_after_restart(settings):
    paths = stack_paths()
    assert stack.stop_service(paths, "redis")
    try:
        status = health.check_redis(settings)
        assert not status.up
        assert "make stack-up" in status.line()
        result = subprocess.run([sys.executable, "-m", "devstack.health"], capture_output=True, text=True)
        assert result.returncode != 0 and "redis" in result.stderr
    finally:
        stack.start_service(paths, "redis")
    assert health.check_redis(settings).up


def test_taken_port_is_named_with_its_service(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        paths = StackPaths(state=tmp_path, env_file=tmp_path / "stack.env")
        cfg = {"REDIS_PORT": str(port), "REDIS_PASSWORD": "x"}
        with pytest.raises(StackError, match=rf"port {port} for Redis"):
            start_redis(paths, cfg)
