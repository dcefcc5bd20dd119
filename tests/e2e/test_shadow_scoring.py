"""Champion and challenger (issue 15): shadow scoring in the running job, the live comparison as
labels arrive, promotion on live evidence, and the job alerting with the new champion afterwards.

v1 (Production) is trained on a small, different period; v2 (Staging) on the period the stream
then replays, so on the live labels v2 must beat v1. The in-process job runs on its own topic,
schema and model name.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from fraudops.contract.messages import serialize_message
from streaming.scoring_job import JobOptions, start_queries
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def history():
    return support.small_history(days=6, customers=150, seed=7)


@pytest.fixture(scope="module")
def built_models(settings, history):
    """(weak v1: trained on another, tiny period; v2: trained on the streamed period), logged once."""
    from fraudops.modeling.registry import get_version, registry_client

    scratch = f"fraud-detector-shadow-build-{uuid.uuid4().hex[:8]}"
    other = support.small_history(days=2, customers=30, seed=99)
    built = []
    for i, data in enumerate((other, history)):
        support.train_and_register(settings, f"{scratch}-{i}", data, seed=i)
        built.append(get_version(f"{scratch}-{i}", "1", registry_client(settings)))
    return built


def register_copy(model_name: str, built) -> str:
    from fraudops.modeling.registry import register_model_version

    return str(register_model_version(built.source, model_name, built.tags, run_id=built.run_id).version)


def job_options(ns, model_uri: str) -> JobOptions:
    return JobOptions(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                      redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                      alerts_topic=ns.alerts_topic, model_uri=model_uri, model_refresh_seconds=0.1,
                      merchant_refresh_seconds=0.1, query_prefix=ns.pg_schema + "_")


def transaction_messages(rows):
    return [(r["user_id"].encode(), serialize_message(r)) for r in rows.to_dict("records")]


def label_messages(rows):
    return [(r["transaction_id"].encode(),
             json.dumps({"transaction_id": r["transaction_id"], "is_fraud": bool(r["is_fraud"]),
                         "source": "chargeback"}).encode()) for r in rows.to_dict("records")]


def query(pg_conn, ns, sql: str) -> list[tuple]:
    with pg_conn.cursor() as cur:
        cur.execute(sql.replace("{s}", f'"{ns.pg_schema}"'))
        rows = cur.fetchall()
    pg_conn.rollback()
    return rows


def events(pg_conn, ns, event_type: str) -> list[tuple]:
    return query(pg_conn, ns, f"""SELECT details->>'from_version', details->>'to_version' FROM {{s}}.audit_log
                                  WHERE event_type = '{event_type}' ORDER BY audit_id""")


@pytest.mark.timeout(900)
def test_shadow_scoring_comparison_and_live_promotion(spark, settings, pg_conn, namespace, history, built_models):
    from fraudops.modeling.registry import promote_to_production, promote_to_staging
    from monitoring.challenger import compare_live
    from pipelines.promote import promote_on_live_evidence

    ns = namespace
    name = f"fraud-detector-shadow-{uuid.uuid4().hex[:8]}"
    assert register_copy(name, built_models[0]) == "1"
    promote_to_production(name, "1")
    assert register_copy(name, built_models[1]) == "2"
    promote_to_staging(name, "2")
    stream = history.sort_values("transaction_time").iloc[: 600]
    first, second = stream.iloc[:500], stream.iloc[500:]

    job = start_queries(spark, settings, job_options(ns, f"models:/{name}/Production"))
    try:
        assert_eventually(lambda: events(pg_conn, ns, "challenger_switch") == [(None, "2")], timeout=60,
                          interval=0.1, message="the job picked up the challenger v2")
        support.produce(settings, ns.topic, transaction_messages(first))
        job.process_all_available()
        support.produce(settings, ns.labels_topic, label_messages(first))
        job.process_all_available()

        # both scores for every transaction, alerts only from the champion
        assert query(pg_conn, ns, "SELECT model_version, count(*) FROM {s}.transactions GROUP BY 1") == [("1", 500)]
        assert query(pg_conn, ns, "SELECT model_version, count(*) FROM {s}.shadow_scores GROUP BY 1") == [("2", 500)]
        assert query(pg_conn, ns, """SELECT count(*) FROM {s}.transactions t LEFT JOIN {s}.shadow_scores s
                                     USING (transaction_id) WHERE s.transaction_id IS NULL""") == [(0,)]
        assert {v for (v,) in query(pg_conn, ns, "SELECT DISTINCT model_version FROM {s}.fraud_alerts")} <= {"1"}
        assert query(pg_conn, ns, "SELECT count(*) FROM {s}.labels") == [(500,)]

        # the live comparison: v2 (trained on this period) beats v1 on the same labels
        comparison = compare_live(settings, model_name=name, pg_schema=ns.pg_schema)
        assert comparison.labels == 500
        assert comparison.challenger["average_precision"] > comparison.champion["average_precision"]
        assert query(pg_conn, ns, """SELECT count(*) FROM {s}.monitoring_metrics
                                     WHERE metric_name = 'challenger_average_precision'""") == [(1,)]

        # promotion on live evidence, then the job alerts with v2 and has no challenger
        outcome = promote_on_live_evidence(settings, model_name=name, pg_schema=ns.pg_schema,
                                           min_live_labels=100, min_margin=0.0)
        assert outcome["decision"] == "promote", outcome
        assert_eventually(lambda: events(pg_conn, ns, "model_switch") == [("1", "2")], timeout=60, interval=0.1,
                          message="the job switched to v2")
        assert_eventually(lambda: events(pg_conn, ns, "challenger_switch") == [(None, "2"), ("2", None)],
                          timeout=60, interval=0.1, message="the job dropped the challenger")
        support.produce(settings, ns.topic, transaction_messages(second))
        job.process_all_available()
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]
    assert dict(query(pg_conn, ns, "SELECT model_version, count(*) FROM {s}.transactions GROUP BY 1")) == \
        {"1": 500, "2": len(second)}
    assert query(pg_conn, ns, "SELECT model_version, count(*) FROM {s}.shadow_scores GROUP BY 1") == [("2", 500)]
    alerted = {v for (v,) in query(pg_conn, ns, """SELECT DISTINCT a.model_version FROM {s}.fraud_alerts a
                                                   JOIN {s}.transactions t USING (transaction_id)
                                                   WHERE t.model_version = '2'""")}
    assert alerted <= {"2"}
    assert query(pg_conn, ns, """SELECT count(*) FROM {s}.audit_log WHERE event_type = 'model_promotion'
                                 AND details->>'evidence' = 'live'""") == [(1,)]


@pytest.mark.timeout(1800)  # waits of 600 s + 1200 s, as tests/e2e/test_scoring_job_process.py
def test_sigkill_mid_stream_with_a_challenger_stores_each_score_exactly_once(settings, pg_conn, namespace, history,
                                                                             built_models, tmp_path):
    """spark-submit job, v1 Production and v2 Staging, SIGKILL mid-stream, restart: every
    transaction exactly once in transactions and exactly once (v2) in shadow_scores."""
    from fraudops.modeling.registry import promote_to_production, promote_to_staging

    ns = namespace
    name = f"fraud-detector-shadow-kill-{uuid.uuid4().hex[:8]}"
    register_copy(name, built_models[0])
    promote_to_production(name, "1")
    register_copy(name, built_models[1])
    promote_to_staging(name, "2")
    stream = history.sort_values("transaction_time").iloc[:1600]
    first, second = stream.iloc[:1200], stream.iloc[1200:]
    support.produce(settings, ns.topic, transaction_messages(first))
    log_path = tmp_path / "job.log"
    job = support.spark_submit(ns, name, log_path, max_offsets=300)
    try:
        assert_eventually(lambda: support.count(pg_conn, ns, "shadow_scores") > 0, timeout=600, interval=0.5,
                          message=f"first rows scored in shadow (log {log_path})")
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        killed_at = support.count(pg_conn, ns, "transactions")
        support.produce(settings, ns.topic, transaction_messages(second))
        job = support.spark_submit(ns, name, log_path, max_offsets=300)
        assert_eventually(lambda: support.count(pg_conn, ns, "shadow_scores") >= len(stream), timeout=1200,
                          interval=1.0, message=f"all rows scored after restart (log {log_path})")
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(120)
    finally:
        # the Python driver is the JVM's child: nothing of the job may outlive the test (a clean
        # stop on SIGTERM is tests/e2e/test_scoring_job_process.py's to check)
        deadline = time.monotonic() + 150
        while support.group_alive(job.pid) and job.poll() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        if support.group_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)
    assert killed_at < len(stream), "the job finished before it was killed: nothing was tested"
    assert query(pg_conn, ns, "SELECT count(*), count(DISTINCT transaction_id) FROM {s}.transactions") == \
        [(len(stream), len(stream))]
    assert query(pg_conn, ns, """SELECT model_version, count(*), count(DISTINCT transaction_id)
                                 FROM {s}.shadow_scores GROUP BY 1""") == [("2", len(stream), len(stream))]
    assert query(pg_conn, ns, """SELECT count(*) FROM {s}.transactions t LEFT JOIN {s}.shadow_scores s
                                 USING (transaction_id) WHERE s.transaction_id IS NULL""") == [(0,)]
    assert {v for (v,) in query(pg_conn, ns, "SELECT DISTINCT model_version FROM {s}.fraud_alerts")} <= {"1"}
