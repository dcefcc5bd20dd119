"""The scoring job's per-micro-batch metrics on the real stack: what the handler records (rows,
latency, where its time went) and Spark's progress phases (durationMs) from the listener.

Its own topics, schema, Redis prefix and checkpoint; the queries are always stopped.
"""

from __future__ import annotations

import pytest

from streaming.scoring_job import JobOptions, start_queries
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

HANDLER_PHASES = ("handler_to_task_seconds", "task_records_seconds", "pass_seconds", "task_to_handler_seconds")
PROGRESS_PHASES = ("duration_trigger_execution_ms", "duration_add_batch_ms", "duration_wal_commit_ms",
                   "duration_latest_offset_ms")


@pytest.fixture(scope="module")
def model_name(settings, history):
    import uuid

    name = f"fraud-detector-metrics-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history)
    return name


def scoring_metrics(pg_conn, ns) -> dict[int, dict[str, float]]:
    """batch_id -> {metric name: value} of the scoring query."""
    with pg_conn.cursor() as cur:
        cur.execute(f"""SELECT (labels->>'batch_id')::bigint, metric_name, metric_value
                        FROM "{ns.pg_schema}".monitoring_metrics WHERE labels->>'query' LIKE '%%scoring'""")
        rows = cur.fetchall()
    pg_conn.rollback()
    batches: dict[int, dict[str, float]] = {}
    for batch_id, name, value in rows:
        batches.setdefault(batch_id, {})[name] = value
    return batches


def test_each_batch_records_its_rows_latency_and_where_its_time_went(spark, settings, pg_conn, namespace,
                                                                      model_name, history):
    from fraudops.contract.messages import serialize_message

    rows = history.head(120).to_dict("records")
    support.produce(settings, namespace.topic, [(r["user_id"].encode(), serialize_message(r)) for r in rows])
    options = JobOptions(checkpoint_dir=namespace.checkpoint_dir, trigger_seconds=0.5, pg_schema=namespace.pg_schema,
                         redis_prefix=namespace.redis_prefix, topic=namespace.topic,
                         labels_topic=namespace.labels_topic, alerts_topic=namespace.alerts_topic,
                         model_uri=f"models:/{model_name}/Production", with_labels=False,
                         query_prefix=namespace.pg_schema + "_")
    job = start_queries(spark, settings, options)
    try:
        job.process_all_available()
        # the progress listener reports after the batch: wait for it while the query runs
        batches = assert_eventually(
            lambda: (found := scoring_metrics(pg_conn, namespace))
            and all(name in found[b] for b in found if found[b].get("scored_rows") for name in PROGRESS_PHASES)
            and found, timeout=60, message="progress phases of every batch with rows")
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]

    scored = {b: m for b, m in batches.items() if m.get("scored_rows")}
    assert sum(m["scored_rows"] for m in scored.values()) == support.count(pg_conn, namespace, "transactions") == 120
    for metrics in scored.values():
        assert metrics["latency_p95_seconds"] >= metrics["latency_p50_seconds"] > 0
        assert all(metrics[name] >= 0 for name in HANDLER_PHASES), metrics
        # the handler's phases are parts of its own time
        assert sum(metrics[name] for name in HANDLER_PHASES) <= metrics["batch_write_seconds"] + 0.01
        assert metrics["duration_add_batch_ms"] <= metrics["duration_trigger_execution_ms"]
        assert metrics["input_rows"] >= metrics["scored_rows"]
