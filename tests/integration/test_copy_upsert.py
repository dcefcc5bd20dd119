"""The sinks' PostgreSQL write (streaming.sinks.copy_upsert): one COPY straight into the table
when no row is there yet, the temporary table and ``INSERT .. ON CONFLICT`` when some are (a
replayed micro-batch). Values come back exactly as written (text with tabs, newlines,
backslashes and a literal ``\\N``, NULLs, timestamps to the microsecond, floats to the last bit),
a replay inserts nothing, a partial overlap inserts only the new rows, and the alerts trigger
still notifies once per statement. Real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.monitoring_support import create_schema, drop_schema, schema_targets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def conn(settings, pg_conn, unique_name):
    from streaming.sinks import pg_connect

    schema = create_schema(pg_conn, f"copy_{unique_name}")
    targets = schema_targets(settings, schema, redis_prefix=f"{schema}:")
    connection = pg_connect(targets)
    yield connection
    connection.close()
    drop_schema(pg_conn, schema)


def _transactions(ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    awkward = ["tab\there", "new\nline", "back\\slash", "\\N", "crlf\r\n", "ünïcødé €", "quote \"x\" 'y'", "plain"]
    return pd.DataFrame({
        "transaction_id": ids,
        "user_id": [f"USER_{i}" for i in range(n)],
        "amount": np.array([0.1 + 0.2, 1e-7, 123456.789, 0.0, 5e15, 2.5, 1 / 3, 7.0][:n] * (n // 8 + 1))[:n],
        "currency": "EUR",
        "merchant": (awkward * (n // len(awkward) + 1))[:n],
        "merchant_id": [None if i % 2 else f"M{i}" for i in range(n)],
        "merchant_category": None,
        "transaction_time": pd.to_datetime(1_700_000_000_123_456 + np.arange(n) * 1_000_001, unit="us", utc=True),
        "country": "FR",
        "transaction_type": "purchase",
        "channel": [np.nan if i % 3 else "online" for i in range(n)],
        "device_id": None,
        "fraud_score": np.linspace(0.0, 1.0, n),
        "is_fraud": np.arange(n) % 2 == 0,
        "decision_threshold": 0.5,
        "model_version": "7",
        "feature_set_version": "fs-v2",
        "features": ['{"amount":1.5,"merchant":"a\\\\b\\"c","x":null}'] * n,
        "kafka_partition": np.arange(n, dtype="int32") % 3,
        "kafka_offset": np.arange(n, dtype="int64") + 10**12,
        "produced_at": pd.Timestamp("2026-01-02T03:04:05.678901Z"),
        "scored_at": pd.Timestamp.now(tz="UTC").floor("us"),
        # the decision service's columns (0006): a decision, or none for rows the stream alone scored
        "decision": (["approve", "review", "decline", None] * (n // 4 + 1))[:n],
        "decline_threshold": [0.9 if i % 4 != 3 else np.nan for i in range(n)],
        "decided_at": [pd.Timestamp("2026-01-02T03:04:05.000001Z") if i % 4 != 3 else None for i in range(n)],
        "decision_degraded": ([False, True, False, None] * (n // 4 + 1))[:n],
        "degraded_reason": ([None, "timeout", None, None] * (n // 4 + 1))[:n],
        # the rules that fired (0007): JSON text, or none
        "rules_fired": (['[{"name":"big","version":2,"action":"review","shadow":false}]', None]
                        * (n // 2 + 1))[:n],
    })


def test_copy_upsert_writes_exact_values_and_a_replay_adds_nothing(conn):
    from fraudops.contract.tables import TRANSACTION_INSERT_COLUMNS
    from streaming.sinks import copy_upsert

    frame = _transactions([f"T{i}" for i in range(16)])
    with conn.cursor() as cur:
        assert copy_upsert(cur, "transactions", frame, TRANSACTION_INSERT_COLUMNS, "(transaction_id) DO NOTHING") == 16
    conn.commit()
    with conn.cursor() as cur:  # the same rows again: nothing new, no error
        assert copy_upsert(cur, "transactions", frame, TRANSACTION_INSERT_COLUMNS, "(transaction_id) DO NOTHING") == 0
    conn.commit()
    more = _transactions([f"T{i}" for i in range(10, 20)])  # 6 already there, 4 new
    with conn.cursor() as cur:
        assert copy_upsert(cur, "transactions", more, TRANSACTION_INSERT_COLUMNS, "(transaction_id) DO NOTHING") == 4
    conn.commit()

    stored = pd.read_sql_query("SELECT * FROM transactions ORDER BY kafka_offset, transaction_id", conn)
    conn.rollback()
    assert len(stored) == stored["transaction_id"].nunique() == 20
    got = stored.set_index("transaction_id").loc[frame["transaction_id"]]
    assert got["merchant"].tolist() == frame["merchant"].tolist()
    assert got["amount"].tolist() == frame["amount"].tolist()  # bit for bit
    assert got["fraud_score"].tolist() == frame["fraud_score"].tolist()
    assert got["merchant_id"].tolist() == frame["merchant_id"].tolist()
    assert got["channel"].isna().tolist() == frame["channel"].isna().tolist()
    assert got["merchant_category"].isna().all() and got["device_id"].isna().all()
    assert got["is_fraud"].tolist() == frame["is_fraud"].tolist()
    assert got["kafka_offset"].tolist() == frame["kafka_offset"].tolist()
    assert (pd.to_datetime(got["transaction_time"], utc=True).to_numpy() == frame["transaction_time"].to_numpy()).all()
    assert (pd.to_datetime(got["produced_at"], utc=True) == frame["produced_at"].iloc[0]).all()
    assert got["features"].iloc[0] == {"amount": 1.5, "merchant": 'a\\b"c', "x": None}


def test_labels_upsert_through_copy_keeps_the_newer_label(conn):
    from streaming.sinks import copy_upsert, upsert_labels

    frame = _transactions(["L1", "L2"])
    from fraudops.contract.tables import TRANSACTION_INSERT_COLUMNS

    with conn.cursor() as cur:
        copy_upsert(cur, "transactions", frame, TRANSACTION_INSERT_COLUMNS, "(transaction_id) DO NOTHING")
    conn.commit()
    first = pd.DataFrame({"transaction_id": ["L1", "L2"], "is_fraud": [True, False], "source": "chargeback",
                          "labeled_at": pd.Timestamp("2026-01-01T00:00:00Z")})
    assert upsert_labels(conn, first) == 2
    newer = first.assign(is_fraud=[False, True], labeled_at=pd.Timestamp("2026-01-02T00:00:00Z")).head(1)
    assert upsert_labels(conn, newer) == 1  # a conflict: the temp table path, DO UPDATE
    stored = pd.read_sql_query("SELECT transaction_id, is_fraud FROM labels ORDER BY transaction_id", conn)
    conn.rollback()
    assert stored["is_fraud"].tolist() == [False, False]


def test_alerts_copied_straight_in_still_notify_the_portal(settings, conn):
    import json
    import select
    import time

    import psycopg2

    from fraudops.contract.tables import TRANSACTION_INSERT_COLUMNS
    from streaming.sinks import write_scored_chunk

    listener = psycopg2.connect(settings.postgres_dsn)
    listener.autocommit = True
    try:
        with listener.cursor() as cur:
            cur.execute("LISTEN fraud_alerts_inserted")
        frame = _transactions([f"A{i}" for i in range(8)]).assign(reasons=None)
        alerts, inserted = write_scored_chunk(conn, frame, None)
        assert inserted == 8 and len(alerts) == 4
        with conn.cursor() as cur:
            cur.execute("SELECT current_schema()")
            schema = cur.fetchone()[0]
        conn.rollback()

        def ours():  # other tests may insert alerts in their own schemas meanwhile
            return [n for n in listener.notifies if json.loads(n.payload)["schema"] == schema]

        deadline = time.monotonic() + 30
        while not ours() and time.monotonic() < deadline:  # delivered after the commit
            select.select([listener], [], [], 1.0)
            listener.poll()
        assert len(ours()) == 1
        assert frame.columns.isin(TRANSACTION_INSERT_COLUMNS).sum() == len(TRANSACTION_INSERT_COLUMNS)
    finally:
        listener.close()
