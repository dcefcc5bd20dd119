"""The scoring job's own Prometheus metrics on the real stack (Kafka, Spark, PostgreSQL, the
feature store, MLflow): after the job scores a topic, the driver's /metrics (real HTTP) counts
exactly the transactions, alerts and quarantined messages (by reason kind) that PostgreSQL holds.

Its own topics, schema, Redis prefix and checkpoint; the queries are always stopped.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from streaming import prometheus
from streaming.scoring_job import JobOptions, start_queries
from tests import streaming_support as support
from tests.observability_support import scrape, value

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def model_name(settings, history):
    name = f"fraud-detector-prom-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history)
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_drivers_metrics_count_what_the_job_wrote(spark, settings, pg_conn, namespace, model_name, history):
    from fraudops.contract.messages import serialize_message

    rows = history.head(150).to_dict("records")
    bad = [b"not json at all", b'{"transaction_id": "TXN_BAD_1"}', b'{"amount": 1, "amount": 2}']
    support.produce(settings, namespace.topic,
                    [(r["user_id"].encode(), serialize_message(r)) for r in rows] + [(b"bad", v) for v in bad])
    server = prometheus.serve(free_port())
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    options = JobOptions(checkpoint_dir=namespace.checkpoint_dir, trigger_seconds=0.5, pg_schema=namespace.pg_schema,
                         redis_prefix=namespace.redis_prefix, topic=namespace.topic,
                         labels_topic=namespace.labels_topic, alerts_topic=namespace.alerts_topic,
                         model_uri=f"models:/{model_name}/Production", with_labels=False,
                         query_prefix=namespace.pg_schema + "_")
    try:
        before = scrape(url)
        job = start_queries(spark, settings, options)
        try:
            job.process_all_available()
        finally:
            job.stop()
        assert not job.failures(), [q.exception() for q in job.failures()]
        after = scrape(url)
    finally:
        server.shutdown()
        server.server_close()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    p = prometheus.PREFIX
    assert delta(p + "transactions_total") == support.count(pg_conn, namespace, "transactions") == 150
    assert delta(p + "alerts_total") == support.count(pg_conn, namespace, "fraud_alerts")
    assert delta(p + "end_to_end_latency_seconds_count") == 150
    assert delta(p + "end_to_end_latency_seconds_sum") > 0
    with pg_conn.cursor() as cur:
        cur.execute(f"""SELECT split_part(reason, ':', 1), count(*) FROM "{namespace.pg_schema}".quarantine
                        GROUP BY 1""")
        stored = dict(cur.fetchall())
    pg_conn.rollback()
    assert sum(stored.values()) == len(bad)
    assert {kind: delta(p + "quarantined_total", reason=kind) for kind in stored} == stored
    assert delta(p + "batches_total", query="scoring") >= 1
    assert value(after, p + "model_version") == 1.0
