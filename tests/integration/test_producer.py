"""The producer against the real Kafka broker: messages and labels go out and come back intact."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from fraudops.contract.messages import TRANSACTION_COLUMNS, validate_message
from fraudops.kafka_io import delete_topics, ensure_topics, make_consumer, wait_for_broker
from fraudops.settings import PROJECT_ROOT
from simulator.generator import LiveSimulator
from streaming.producer import produce_transactions
from tests.polling import assert_eventually

pytestmark = pytest.mark.integration

START = datetime(2025, 4, 1, 12, tzinfo=UTC)
NOW = START + timedelta(days=30)


@pytest.fixture
def topics(settings, unique_name):
    """A fresh transactions topic and labels topic for this test (deleted afterwards)."""
    names = (f"test-transactions-{unique_name}", f"test-labels-{unique_name}")
    ensure_topics(settings, {names[0]: 2, names[1]: 1})
    yield names
    delete_topics(settings, list(names))


def read_all(settings, topic: str, expected: int, group: str) -> list:
    """Consume ``expected`` messages from ``topic`` (polling until they are all there)."""
    consumer = make_consumer(settings, group)
    consumer.subscribe([topic])
    received = []
    try:
        def all_there():
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                received.append(message)
            return len(received) >= expected

        assert_eventually(all_there, timeout=60, interval=0.1, message=f"{expected} messages on {topic}")
    finally:
        consumer.close()
    return received


def test_producer_to_the_real_broker_and_back(settings, topics, unique_name):
    transactions_topic, labels_topic = topics
    target = dataclasses.replace(settings, kafka_topic=transactions_topic)
    simulator = LiveSimulator(seed=5, fraud_ratio=0.2, customers=300, start=START, label_delay=timedelta(0))
    stats = produce_transactions(target, simulator, num=300, rate=0, labels_topic=labels_topic, progress=False)
    assert stats.transactions == 300 and stats.failed == 0
    assert stats.delivered == stats.transactions + stats.labels

    messages = read_all(settings, transactions_topic, 300, f"{unique_name}-tx")
    records = []
    for message in messages:
        record, reason = validate_message(message.value(), now=NOW)
        assert reason is None, reason
        assert message.key().decode() == record["user_id"]  # keyed by user_id
        assert set(json.loads(message.value())) <= set(TRANSACTION_COLUMNS)  # no ground truth on the wire
        records.append(record)
    assert len({r["transaction_id"] for r in records}) == 300

    # the same seed and start give the same stream: the broker holds exactly those transactions
    expected = LiveSimulator(seed=5, fraud_ratio=0.2, customers=300, start=START, label_delay=timedelta(0))
    truth: dict[str, int] = {}
    for event in expected.events():
        if event.kind == "transaction":
            truth[event.message["transaction_id"]] = event.is_fraud
            if len(truth) == 300:
                break
    assert {r["transaction_id"] for r in records} == set(truth)

    labels = [json.loads(m.value()) for m in read_all(settings, labels_topic, stats.labels, f"{unique_name}-lb")]
    assert len(labels) == stats.labels > 0
    for label in labels:
        assert label["source"] == "chargeback" and label["is_fraud"] == 1
        assert truth[label["transaction_id"]] == 1


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "streaming.producer", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=120, **kwargs)


def test_cli_with_the_seeds_flags(settings, topics, unique_name):
    transactions_topic, labels_topic = topics
    result = run_cli("--broker", settings.kafka_brokers, "--topic", transactions_topic, "--labels-topic", labels_topic,
                     "--num", "50", "--delay", "0", "--fraud-rate", "0.05", "--seed", "3", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "produced 50 transactions" in result.stdout
    assert len(read_all(settings, transactions_topic, 50, f"{unique_name}-cli")) == 50


def test_sigterm_flushes_and_reports_the_count(settings, topics, unique_name):
    transactions_topic, labels_topic = topics
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streaming.producer", "--broker", settings.kafka_brokers, "--topic", transactions_topic,
         "--labels-topic", labels_topic, "--rate", "200", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT, env=env,
    )
    try:
        read_all(settings, transactions_topic, 20, f"{unique_name}-early")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    sent = int(stdout.split("produced ")[1].split(" ")[0])
    assert sent >= 20
    assert len(read_all(settings, transactions_topic, sent, f"{unique_name}-all")) == sent


def test_broker_down_gives_a_clear_error_not_a_hang(settings):
    down = dataclasses.replace(settings, kafka_brokers="127.0.0.1:1")
    with pytest.raises(ConnectionError, match="make stack-up"):
        wait_for_broker(down, timeout=2.0)
    result = run_cli("--broker", "127.0.0.1:1", "--num", "5", "--no-progress")
    assert result.returncode == 2
    assert "Kafka broker at 127.0.0.1:1" in result.stderr and "make stack-up" in result.stderr
