"""`make demo`'s summary (devstack.demo.print_summary) on rows planted in a schema of its own:
the latency it prints leaves out the rows that waited for the job's own start, which it reports
apart (time from the first message to the first commit). Real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from devstack.demo import print_summary, seed_messages_for_run
from tests.monitoring_support import create_schema, drop_schema, history_since, insert_scored, scored_rows

pytestmark = [pytest.mark.integration]


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"demo_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


def test_summary_reports_start_up_wait_apart_from_steady_latency(settings, pg_conn, schema, capsys):
    since = datetime.now(UTC).replace(microsecond=0)
    history = history_since(days=2, customers=20, seed=5).head(40).reset_index(drop=True)
    rows = scored_rows(history, threshold=0.99)
    # 10 rows produced before the job was up: all committed in its first batch, 12 s later;
    # 30 rows produced afterwards, each committed 1 s (then, the last 3, 3 s) after its Kafka timestamp
    produced = [since + timedelta(seconds=0.1 * i) for i in range(10)]
    ingested = [since + timedelta(seconds=12)] * 10
    for i in range(30):
        produced.append(since + timedelta(seconds=13 + i))
        ingested.append(produced[-1] + timedelta(seconds=3 if i >= 27 else 1))
    rows["produced_at"] = pd.to_datetime(produced, utc=True)
    rows["ingested_at"] = pd.to_datetime(ingested, utc=True)
    insert_scored(pg_conn, schema, rows, with_alerts=False)

    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
    pg_conn.commit()  # kept across the rollbacks of the polling
    print_summary(pg_conn, settings, since, [m["transaction_id"] for m in seed_messages_for_run("none")])
    out = capsys.readouterr().out

    assert "transactions scored : 40" in out
    assert "throughput          : 1 tx/s over the rows produced after the first commit (32.0 s;" in out  # 30 rows, 13 s -> 45 s
    assert "first commit        : 12.0 s after the first message" in out
    steady = next(line for line in out.splitlines() if line.startswith("end-to-end latency"))
    assert "over 30 rows produced after the first commit" in steady
    assert "p50 1.00 s" in steady
    assert "p95 3.00 s" in steady  # 3 of 30 rows at 3 s: the 95th percentile interpolates to 3.00
    every = next(line for line in out.splitlines() if "all rows" in line)
    assert "p50 1.00 s" in every and "start-up wait included" in every


def test_wait_scored_sees_the_scenarios_once_committed(pg_conn, schema):
    from devstack.demo import wait_until_scored

    rows = scored_rows(history_since(days=1, customers=5, seed=6).head(2).reset_index(drop=True))
    insert_scored(pg_conn, schema, rows, with_alerts=False)
    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
    pg_conn.commit()  # kept across the rollbacks of the polling
    ids = rows["transaction_id"].tolist()
    assert wait_until_scored(pg_conn, ids, timeout=5)
    assert not wait_until_scored(pg_conn, [*ids, "TXN_never_sent"], timeout=1)
    assert wait_until_scored(pg_conn, ids[:1], timeout=1)  # still reading the planted schema


def test_summary_prints_precision_and_recall_of_the_live_alerts(settings, pg_conn, schema, capsys):
    since = datetime.now(UTC).replace(microsecond=0)
    history = history_since(days=3, customers=30, seed=7, fraud_ratio=0.1).reset_index(drop=True)
    # noisy scores of the hidden label, with one fraud missed and one legitimate transaction
    # alerted whatever the draw (the history depends on the clock), so neither figure is 0 or 1
    fraud_label = history["is_fraud"].to_numpy() == 1
    rng = np.random.default_rng(3)
    scores = np.where(fraud_label, rng.beta(5, 2, len(history)), rng.beta(1, 5, len(history)))
    scores[np.flatnonzero(fraud_label)[0]] = 0.1
    scores[np.flatnonzero(~fraud_label)[0]] = 0.9
    rows = scored_rows(history, threshold=0.5, scores=scores)
    insert_scored(pg_conn, schema, rows, with_alerts=False)
    truth = history[["transaction_id", "is_fraud", "fraud_scenario"]].copy()
    never_scored = pd.DataFrame({"transaction_id": ["TXN_never_sent"], "is_fraud": [1], "fraud_scenario": ["card_testing"]})
    truth = pd.concat([truth, never_scored], ignore_index=True)
    alert, fraud = rows["is_fraud"].to_numpy(bool), history["is_fraud"].to_numpy() == 1
    assert 0 < (alert & fraud).sum() < min(alert.sum(), fraud.sum())  # neither 0 nor 1

    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
    pg_conn.commit()
    print_summary(pg_conn, settings, since, [m["transaction_id"] for m in seed_messages_for_run("none")], truth)
    out = capsys.readouterr().out

    line = next(line for line in out.splitlines() if line.startswith("live alerts vs truth"))
    caught = int((alert & fraud).sum())
    assert f"precision {caught / alert.sum():.3f} ({caught} of {int(alert.sum())} alerts are fraud)" in line
    assert f"recall {caught / fraud.sum():.3f} ({caught} of {int(fraud.sum())} frauds alerted)" in line
    assert f"over {len(history)} scored live transactions" in line
    by_scenario = next(line for line in out.splitlines() if "recall by scenario" in line)
    for name, group in history[fraud].groupby("fraud_scenario"):
        assert f"{name} {int(alert[group.index].sum())}/{len(group)}" in by_scenario
    assert "transactions scored :" in out  # the existing lines stay


def test_live_plan_continues_the_history_and_its_truth_is_the_producers_stream(pg_conn, schema, tmp_path):
    from devstack.demo import live_ground_truth, plan_live
    from simulator.generator import LiveSimulator

    history = history_since(days=2, customers=20, seed=5, end=datetime(2025, 3, 1, tzinfo=UTC))
    path = tmp_path / "history.parquet"
    history.to_parquet(path, index=False)
    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
    pg_conn.commit()
    newest = pd.to_datetime(history["transaction_time"], utc=True).max()

    args = plan_live(pg_conn, path, seed=5, customers=20, fraud_rate=0.05, num=50, truth=tmp_path / "truth.csv")
    assert args[:4] == ["--seed", "5", "--customers", "20"]
    start = datetime.fromisoformat(args[5])
    assert start == newest + timedelta(milliseconds=1)  # right after the history's newest event
    truth = pd.read_csv(tmp_path / "truth.csv", dtype={"transaction_id": str})
    # the producer's simulator (streaming.producer builds it so from --seed/--customers/--start)
    producer_stream = LiveSimulator(seed=5, fraud_ratio=0.05, customers=20, start=start,
                                    label_delay=timedelta(seconds=60))
    sent = [e for e, _ in zip((e for e in producer_stream if e.kind == "transaction"), range(50), strict=False)]
    assert truth["transaction_id"].tolist() == [e.message["transaction_id"] for e in sent]
    assert truth["is_fraud"].tolist() == [e.is_fraud for e in sent]
    assert live_ground_truth(5, 20, 0.05, start, 50).equals(truth)
    assert truth["transaction_id"].str.startswith("TXN_L5_").all()

    # a previous run's live transactions, later than the history: the next run starts after them
    later = scored_rows(history.head(1).assign(transaction_id=f"TXN_L5_{int(start.timestamp())}_000000049",
                                               transaction_time=newest + pd.Timedelta(hours=9)))
    insert_scored(pg_conn, schema, later, with_alerts=False)
    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
    pg_conn.commit()
    again = plan_live(pg_conn, path, seed=5, customers=20, fraud_rate=0.05, num=5, truth=tmp_path / "truth2.csv")
    assert datetime.fromisoformat(again[5]) == newest + pd.Timedelta(hours=9) + timedelta(milliseconds=1)
