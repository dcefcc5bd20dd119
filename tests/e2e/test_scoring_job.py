"""The scoring job end to end on the real stack: Kafka -> Spark -> PostgreSQL, Redis, Kafka.

Each test has its own topics, PostgreSQL schema, Redis key prefix, checkpoint folder and
registered model name; queries are driven with processAllAvailable() and always stopped.
"""

from __future__ import annotations

import json

import pytest

from fraudops.contract.messages import serialize_message
from simulator.generator import seed_scenario_messages
from streaming.scoring_job import JobOptions, start_queries
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

POISON = [
    (b"not json at all", "not_json"),
    (b'{"transaction_id": "TXN_TRUNC", "amount": 12', "not_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (json.dumps({"transaction_id": "TXN_P1", "user_id": "USER_1", "currency": "USD", "merchant": "m",
                 "transaction_time": "2025-01-02T10:00:00", "country": "US",
                 "transaction_type": "purchase"}).encode(), "missing_field:amount"),
    (json.dumps({"transaction_id": "TXN_P2", "user_id": "USER_1", "amount": -5, "currency": "USD",
                 "merchant": "m", "transaction_time": "2025-01-02T10:00:00", "country": "US",
                 "transaction_type": "purchase"}).encode(), "negative:amount"),
    (b'{"transaction_id": "TXN_P3", "user_id": "USER_1", "amount": NaN, "currency": "USD", "merchant": "m", '
     b'"transaction_time": "2025-01-02T10:00:00", "country": "US", "transaction_type": "purchase"}', None),
]


@pytest.fixture(scope="module")
def model_name(settings, history):
    import uuid

    name = f"fraud-detector-e2e-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history)
    return name


def job_options(ns, model_name, **overrides) -> JobOptions:
    values = dict(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                  redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                  alerts_topic=ns.alerts_topic, model_uri=f"models:/{model_name}/Production",
                  model_refresh_seconds=0.1, merchant_refresh_seconds=0.1, query_prefix=ns.pg_schema + "_")
    values.update(overrides)
    return JobOptions(**values)


def run_until_drained(spark, settings, options):
    job = start_queries(spark, settings, options)
    try:
        job.process_all_available()
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]


def history_messages(history, n, key="user_id"):
    rows = history.head(n)
    return [(r[key].encode(), serialize_message(r)) for r in rows.to_dict("records")]


def audit_count(pg_conn, ns, event_type: str) -> int:
    return support.count(pg_conn, ns, "audit_log", f"event_type = '{event_type}'")


def stored_scoring(pg_conn, ns):
    """transaction_id -> (features, fraud_score, model_version) of every stored row."""
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT transaction_id, features, fraud_score, model_version FROM "{ns.pg_schema}".transactions')
        rows = {tid: (features, score, version) for tid, features, score, version in cur.fetchall()}
    pg_conn.rollback()
    return rows


def test_accounting_quarantine_and_sinks(spark, settings, pg_conn, redis_client, namespace, model_name, history):
    valid = history_messages(history, 200)
    seed_normal, seed_fraud = seed_scenario_messages()
    seed = [(m["user_id"].encode(), json.dumps(m).encode()) for m in (seed_normal, seed_fraud)]
    poison = [(b"USER_X", value) for value, _ in POISON]
    support.produce(settings, namespace.topic, valid + seed + poison)

    run_until_drained(spark, settings, job_options(namespace, model_name))

    n_total = len(valid) + len(seed) + len(poison)
    scored = support.count(pg_conn, namespace, "transactions")
    quarantined = support.count(pg_conn, namespace, "quarantine")
    assert scored + quarantined == n_total
    assert quarantined == len(poison)
    assert support.count(pg_conn, namespace, "transactions", "model_version IS NOT NULL AND fraud_score IS NOT NULL "
                         "AND features IS NOT NULL AND scored_at IS NOT NULL") == scored
    # the seed's producer format went through as it is, is_fraud_actual never stored as a feature
    tid = seed_fraud["transaction_id"].replace("'", "''")
    assert support.count(pg_conn, namespace, "transactions", f"transaction_id = '{tid}'") == 1
    assert support.count(pg_conn, namespace, "transactions", "features ? 'is_fraud_actual'") == 0

    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT reason FROM "{namespace.pg_schema}".quarantine ORDER BY kafka_offset')
        reasons = [r[0] for r in cur.fetchall()]
    pg_conn.rollback()
    for _, expected in POISON:
        if expected:
            assert any(r == expected or r.startswith(expected) for r in reasons), (expected, reasons)

    with pg_conn.cursor() as cur:  # the seed's README queries
        cur.execute(f'SET search_path TO "{namespace.pg_schema}"')
        cur.execute("SELECT * FROM fraud_alerts WHERE is_fraud = TRUE ORDER BY detection_time DESC LIMIT 10;")
        seed_alerts = cur.fetchall()
        cur.execute("SELECT * FROM fraud_summary;")
        assert sum(row[1] for row in cur.fetchall()) == scored
    pg_conn.rollback()

    alerts = support.count(pg_conn, namespace, "fraud_alerts")
    assert len(seed_alerts) == min(alerts, 10)
    assert alerts == support.count(pg_conn, namespace, "transactions", "is_fraud")
    keys = list(redis_client.scan_iter(f"{namespace.redis_prefix}fraud_alert:*"))
    assert len(keys) == alerts
    if alerts:
        tid = seed_alerts[0][1]
        assert json.loads(redis_client.get(f"{namespace.redis_prefix}fraud_alert:{tid}"))["transaction_id"] == tid
        payload = json.loads(redis_client.get(keys[0]))
        assert payload["fraud_score"] >= 0.5 and redis_client.ttl(keys[0]) > 0
        assert redis_client.zcard(f"{namespace.redis_prefix}recent_fraud_alerts") == alerts
        assert len(support.consume_all(settings, namespace.alerts_topic, namespace.pg_schema, alerts)) >= alerts


def test_replay_after_restart_neither_loses_nor_doubles(spark, settings, pg_conn, namespace, model_name, history):
    messages = history_messages(history, 120)
    support.produce(settings, namespace.topic, messages[:60])
    run_until_drained(spark, settings, job_options(namespace, model_name))
    support.produce(settings, namespace.topic, messages[60:])
    run_until_drained(spark, settings, job_options(namespace, model_name))
    assert support.count(pg_conn, namespace, "transactions") == 120


def test_labels_topic_fills_labels_table(spark, settings, pg_conn, namespace, model_name):
    labels = [(b"TXN_L1", json.dumps({"transaction_id": "TXN_L1", "is_fraud": True, "source": "chargeback",
                                      "labeled_at": "2025-01-05T00:00:00Z"}).encode()),
              (b"TXN_L2", json.dumps({"transaction_id": "TXN_L2", "is_fraud": False}).encode()),
              (b"bad", b"{broken")]
    support.produce(settings, namespace.labels_topic, labels)
    run_until_drained(spark, settings, job_options(namespace, model_name))
    assert support.count(pg_conn, namespace, "labels") == 2
    assert support.count(pg_conn, namespace, "quarantine", "reason = 'label:not_json'") == 1


def test_promoted_version_scores_the_next_batches(spark, settings, pg_conn, namespace, model_name, history):
    messages = history_messages(history, 80)
    support.produce(settings, namespace.topic, messages[:40])
    options = job_options(namespace, model_name)
    job = start_queries(spark, settings, options)
    try:
        job.process_all_available()
        support.train_and_register(settings, model_name, history, seed=1)
        # the registry poll runs beside the batches: the next batches score with v2 once it saw it
        assert_eventually(lambda: audit_count(pg_conn, namespace, "model_switch") == 1, timeout=60,
                          interval=0.1, message="the job switched to the promoted version")
        support.produce(settings, namespace.topic, messages[40:])
        job.process_all_available()
    finally:
        job.stop()
    versions = {}
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT model_version, count(*) FROM "{namespace.pg_schema}".transactions GROUP BY 1')
        versions = dict(cur.fetchall())
        cur.execute(f"""SELECT count(*) FROM "{namespace.pg_schema}".audit_log WHERE event_type = 'model_switch'""")
        switches = cur.fetchone()[0]
    pg_conn.rollback()
    # earlier rows keep the old version, the rows after the promotion carry the new one
    assert versions == {"1": 40, "2": 40} and switches == 1, (versions, switches)


def test_stream_features_equal_the_batch_path(spark, settings, pg_conn, namespace, model_name, history):
    """The feature vector the job stores is what training computes for the same transactions,
    with messages keyed by transaction_id as the seed's producer sends them (a user's events
    spread over both partitions) and a restart from the checkpoint halfway."""
    import numpy as np
    import pandas as pd

    from features.batch import compute_features
    from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from features.merchant import MERCHANT_FEATURES

    rows = history.head(150)
    messages = history_messages(history, 150, key="transaction_id")
    support.produce(settings, namespace.topic, messages[:75])
    run_until_drained(spark, settings, job_options(namespace, model_name))
    support.produce(settings, namespace.topic, messages[75:])
    run_until_drained(spark, settings, job_options(namespace, model_name))
    # no labels in this namespace: the batch path gets none either (merchants at the prior)
    expected = compute_features(rows, use_history_labels=False).set_index("transaction_id")
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT transaction_id, features FROM "{namespace.pg_schema}".transactions')
        stored = pd.DataFrame([{"transaction_id": tid, **vector} for tid, vector in cur.fetchall()])
    pg_conn.rollback()
    stored = stored.set_index("transaction_id").loc[expected.index]
    # merchant features come from a snapshot of PostgreSQL taken at the job's refresh time: exact
    # for live events (tests/integration/test_feature_parity.py), not for these months-old ones
    numeric = [name for name in NUMERIC_FEATURES if name not in MERCHANT_FEATURES]
    np.testing.assert_allclose(stored[numeric].to_numpy(float),
                               expected[numeric].to_numpy(float), rtol=1e-9, atol=1e-9)
    assert (stored[CATEGORICAL_FEATURES].to_numpy() == expected[CATEGORICAL_FEATURES].to_numpy()).all()


def test_a_replay_after_losing_the_checkpoint_stores_the_same_features_and_scores(
        spark, settings, pg_conn, namespace, model_name, history):
    """As after a crash that lost everything but the feature store: the topic is read again from
    the start; every transaction gets the same feature vector and score as the first time."""
    import shutil

    support.produce(settings, namespace.topic, history_messages(history, 120, key="transaction_id"))
    run_until_drained(spark, settings, job_options(namespace, model_name))
    first = stored_scoring(pg_conn, namespace)
    assert len(first) == 120
    shutil.rmtree(namespace.checkpoint_dir)
    with pg_conn, pg_conn.cursor() as cur:
        cur.execute(f'TRUNCATE "{namespace.pg_schema}".transactions CASCADE')
    run_until_drained(spark, settings, job_options(namespace, model_name))
    assert stored_scoring(pg_conn, namespace) == first
