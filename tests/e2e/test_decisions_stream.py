"""The decision service and the streaming job together, on the real stack.

- Parity: thousands of transactions (late and out-of-order ones included) decided one after
  another by the service get the score the streaming job gives the same transactions arriving
  in the same order (to 1e-9), with identical features; the job records the service's decided
  transactions exactly once, with the service's score, features and decision.
- Crashes: the service and the job each SIGKILLed mid-way and restarted; every decided
  transaction is recorded once, with the decision its caller got first.
"""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from fraudops.contract.messages import TRANSACTION_COLUMNS, serialize_message
from simulator.generator import generate_history
from streaming.scoring_job import JobOptions, start_queries
from tests import decisions_support as ds
from tests import streaming_support as support
from tests.monitoring_support import insert_labels, insert_rows
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def model_name(settings, history):
    name = f"fraud-detector-decide-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history)
    return name


@pytest.fixture(scope="module")
def past():
    """Six days of history ending now: the merchants' windows the snapshot counts."""
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    frame = generate_history(days=6, customers=150, fraud_ratio=0.03, seed=5,
                             start=(now - pd.Timedelta(days=6, hours=2)).to_pydatetime())
    return frame.assign(transaction_time=frame["transaction_time"].astype("datetime64[us, UTC]"),
                        label_time=frame["transaction_time"].astype("datetime64[us, UTC]") + pd.Timedelta(hours=5))


def seed_history(pg_conn, schema: str, past: pd.DataFrame) -> None:
    rows = past[TRANSACTION_COLUMNS].copy()
    rows["scored_at"] = rows["transaction_time"]
    insert_rows(pg_conn, schema, "transactions", rows)
    insert_labels(pg_conn, schema, past, only_fraud=False)


def live_transactions(past: pd.DataFrame, n: int, seed: int = 1) -> list[dict]:
    """``n`` transactions of the history's customers at its merchants, in arrival order: by time,
    but one in eight arrives late (after up to 20 later events), some users share a timestamp.

    Their times lie 30-90 minutes from now, inside the validity of the merchant snapshots that
    the service and the job read at their start (both valid for 2 h)."""
    rng = np.random.default_rng(seed)
    users = past["user_id"].unique()[:120]
    merchants = past.drop_duplicates("merchant")[["merchant", "merchant_id", "merchant_category"]]
    base = pd.Timestamp(datetime.now(UTC)) + pd.Timedelta(minutes=30)
    offsets = np.sort(rng.uniform(0, 3600, n))
    offsets[rng.choice(n, n // 20, replace=False)] = offsets[rng.choice(n, n // 20, replace=False)]  # ties
    pick = merchants.iloc[rng.integers(0, len(merchants), n)]
    frame = pd.DataFrame({
        "transaction_id": [f"TXN_PAR_{uuid.uuid4().hex[:6]}_{i}" for i in range(n)],
        "user_id": rng.choice(users, n), "amount": np.round(rng.lognormal(3.5, 1.2, n), 2), "currency": "USD",
        "merchant": pick["merchant"].to_numpy(), "merchant_id": pick["merchant_id"].to_numpy(),
        "merchant_category": pick["merchant_category"].to_numpy(),
        "transaction_time": (base + pd.to_timedelta(offsets, unit="s")).strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "country": rng.choice(["US", "US", "US", "GB", "RU"], n), "transaction_type": "purchase",
        "channel": rng.choice(["online", "pos"], n), "device_id": rng.choice([f"D{i}" for i in range(300)], n)})
    arrival = np.arange(n, dtype="float64")
    late = rng.choice(n, n // 8, replace=False)
    arrival[late] += rng.uniform(1, 20, len(late))
    return frame.iloc[np.argsort(arrival, kind="stable")].to_dict("records")


def rounds(messages: list[dict]) -> list[list[dict]]:
    """The arrival sequence cut so that no user has two events in one micro-batch: the job
    then sees each event with exactly the earlier arrivals, as the one-at-a-time service does."""
    out, users = [[]], set()
    for message in messages:
        if message["user_id"] in users:
            out.append([])
            users = set()
        out[-1].append(message)
        users.add(message["user_id"])
    return out


def job_options(ns, model_name: str, **changes) -> JobOptions:
    values = dict(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                  redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                  alerts_topic=ns.alerts_topic, model_uri=f"models:/{model_name}/Production",
                  model_refresh_seconds=5, merchant_refresh_seconds=3600, query_prefix=ns.pg_schema + "_",
                  with_labels=False, decisions_topic=ns.decisions_topic)
    values.update(changes)
    return JobOptions(**values)


def stored(pg_conn, ns) -> dict[str, tuple]:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT transaction_id, fraud_score, features, decision, model_version, decision_degraded '
                    f'FROM "{ns.pg_schema}".transactions WHERE kafka_offset IS NOT NULL')
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    pg_conn.rollback()
    return rows


@pytest.fixture
def two_spaces(pg_conn, settings, unique_name, tmp_path, past):
    decided = support.make_namespace(pg_conn, settings, unique_name + "a", tmp_path / "a")
    streamed = support.make_namespace(pg_conn, settings, unique_name + "b", tmp_path / "b")
    for ns in (decided, streamed):
        seed_history(pg_conn, ns.pg_schema, past)
    yield decided, streamed
    for ns in (decided, streamed):
        support.drop_namespace(pg_conn, ns)


def test_decisions_equal_the_streams_scores_and_the_job_records_them_once(spark, settings, pg_conn, two_spaces,
                                                                           past, model_name, tmp_path):
    decided_ns, streamed_ns = two_spaces
    messages = live_transactions(past, 1500)
    # the service decides them one after another, in arrival order
    with ds.decision_service(settings, decided_ns.pg_schema, decided_ns.redis_prefix, decided_ns.decisions_topic,
                             f"models:/{model_name}/Production", tmp_path / "service.log") as service:
        answers = {}
        for message in messages:
            response = service.post(serialize_message(message))
            assert response.status_code == 200, response.text
            answers[message["transaction_id"]] = response.json()
    assert not any(a["degraded"] for a in answers.values())
    # the job scores the same arrivals from its transactions topic (no user twice per micro-batch)
    job = start_queries(spark, settings, job_options(streamed_ns, model_name))
    try:
        for batch in rounds(messages):
            support.produce(settings, streamed_ns.topic,
                            [(m["user_id"].encode(), serialize_message(m)) for m in batch])
            job.process_all_available()
    finally:
        job.stop()
    assert not job.failures()
    # the job records the service's decisions from the decisions topic
    job = start_queries(spark, settings, job_options(decided_ns, model_name))
    try:
        assert_eventually(lambda: (job.process_all_available(), len(stored(pg_conn, decided_ns)) >= len(messages))[1],
                          timeout=300, interval=1.0, message="decided transactions recorded")
    finally:
        job.stop()
    assert not job.failures()
    streamed, recorded = stored(pg_conn, streamed_ns), stored(pg_conn, decided_ns)
    assert len(streamed) == len(recorded) == len(messages)
    assert support.count(pg_conn, decided_ns, "transactions", "decision IS NOT NULL") == len(messages)
    worst = 0.0
    for tid, answer in answers.items():
        score, features, decision, version, degraded = recorded[tid]
        assert (score, decision, version, degraded) == (answer["score"], answer["decision"], answer["model_version"], False)
        s_score, s_features, s_decision, _, _ = streamed[tid]
        assert s_decision is None  # the stream alone decides nothing
        assert features == s_features, tid
        worst = max(worst, abs(s_score - answer["score"]))
    assert worst <= 1e-9, worst
    alerts = sum(a["decision"] != "approve" for a in answers.values())
    assert support.count(pg_conn, decided_ns, "fraud_alerts", "decision IS NOT NULL") == alerts
    assert support.count(pg_conn, decided_ns, "quarantine") == 0


def test_a_sigkill_of_the_service_and_of_the_job_records_each_decision_once(settings, pg_conn, past, model_name,
                                                                             unique_name, tmp_path):
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path)
    messages = live_transactions(past, 600, seed=2)
    first = {}
    log_path = tmp_path / "job.log"
    job = support.spark_submit(ns, model_name, log_path)
    try:
        for part, (_lo, hi) in enumerate(((0, 300), (300, 600))):
            with ds.decision_service(settings, ns.pg_schema, ns.redis_prefix, ns.decisions_topic,
                                     f"models:/{model_name}/Production", tmp_path / f"service{part}.log") as service:
                for message in messages[:hi]:  # the second service gets the first half again: a retry
                    answer = service.post(serialize_message(message)).json()
                    first.setdefault(message["transaction_id"], answer)
                    assert answer["decision"] == first[message["transaction_id"]]["decision"]
                ds.stop(service.proc, signal.SIGKILL)  # no flush of the producer, no goodbye
            if part == 0:  # the job too, while it records the first half
                assert_eventually(lambda: len(stored(pg_conn, ns)) > 0, timeout=400, interval=0.5,
                                  message=f"first decisions recorded (log {log_path})")
                ds.stop(job, signal.SIGKILL)
                job = support.spark_submit(ns, model_name, log_path)
        # the last SIGKILL may have left decisions unacknowledged by Kafka: the next start sends them
        with ds.decision_service(settings, ns.pg_schema, ns.redis_prefix, ns.decisions_topic,
                                 f"models:/{model_name}/Production", tmp_path / "service2.log"):
            assert_eventually(lambda: len(stored(pg_conn, ns)) >= len(messages), timeout=400, interval=1.0,
                              message=f"every decision recorded (log {log_path})")
    finally:
        ds.stop(job)
    rows = stored(pg_conn, ns)
    assert len(rows) == len(messages) == support.count(pg_conn, ns, "transactions")
    for tid, answer in first.items():
        assert rows[tid][0] == answer["score"] and rows[tid][2] == answer["decision"]
    assert support.count(pg_conn, ns, "quarantine") == 0
    support.drop_namespace(pg_conn, ns)


def test_a_decided_message_that_breaks_the_contract_is_quarantined(spark, settings, pg_conn, namespace, model_name):
    good = {"transaction_id": "TXN_Q1", "user_id": "U1", "amount": 5.0, "currency": "USD", "merchant": "m",
            "transaction_time": "2026-01-01T00:00:00", "country": "US", "transaction_type": "purchase"}
    bad = [{**good, "transaction_id": "TXN_Q2"},  # no decision object
           {**good, "transaction_id": "TXN_Q3", "decision": {"decision": "maybe", "degraded": False}},
           {**good, "transaction_id": "TXN_Q4", "decision": {"decision": "approve", "degraded": False,
                                                             "decided_at": "2026-01-01T00:00:00+00:00",
                                                             "fraud_score": None, "review_threshold": 0.5}}]
    support.produce(settings, namespace.decisions_topic, [(b"U1", json.dumps(b).encode()) for b in bad])
    job = start_queries(spark, settings, job_options(namespace, model_name))
    try:
        job.process_all_available()
    finally:
        job.stop()
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT reason FROM "{namespace.pg_schema}".quarantine ORDER BY kafka_offset')
        reasons = sorted(r[0] for r in cur.fetchall())
    pg_conn.rollback()
    assert reasons == ["bad_decision:decision", "bad_decision:fraud_score", "bad_decision:missing"]
    assert support.count(pg_conn, namespace, "transactions") == 0
