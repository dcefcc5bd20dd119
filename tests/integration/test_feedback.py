"""monitoring.feedback against the real stack: list pending alerts, review them (status, reviewer,
note and the analyst label in one transaction), and named errors for bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from monitoring.feedback import ReviewError, main, pending_alerts, review_alert
from monitoring.storage import connect_schema
from tests.monitoring_support import count_rows, create_schema, drop_schema, insert_scored

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"fb_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


@pytest.fixture
def planted(pg_conn, schema):
    now = datetime.now(UTC)
    rows = pd.DataFrame([{
        "transaction_id": tid, "user_id": "U1", "amount": amount, "currency": "EUR", "merchant": "Shop",
        "transaction_time": now - timedelta(minutes=m), "country": "FR", "transaction_type": "purchase",
        "fraud_score": score, "is_fraud": score >= 0.5, "model_version": "2", "scored_at": now - timedelta(minutes=m)}
        for tid, amount, score, m in [("TX_A", 50.0, 0.9, 30), ("TX_B", 700.0, 0.7, 20), ("TX_OK", 20.0, 0.1, 10)]])
    insert_scored(pg_conn, schema, rows)
    return rows


@pytest.fixture
def conn(settings, schema):
    connection = connect_schema(settings, schema)
    yield connection
    connection.close()


def _alert(pg_conn, schema, transaction_id):
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT alert_status, reviewed_by, reviewed_at, notes FROM "{schema}".fraud_alerts '
                    "WHERE transaction_id = %s", (transaction_id,))
        row = cur.fetchone()
    pg_conn.commit()
    return row


def _labels(pg_conn, schema, transaction_id):
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT is_fraud, source FROM "{schema}".labels WHERE transaction_id = %s', (transaction_id,))
        rows = cur.fetchall()
    pg_conn.commit()
    return rows


def test_list_shows_pending_alerts_oldest_first(conn, planted):
    assert pending_alerts(conn)["transaction_id"].tolist() == ["TX_A", "TX_B"]


def test_confirm_writes_status_reviewer_note_and_label(pg_conn, schema, conn, planted):
    review = review_alert(conn, "TX_A", "confirmed", "alice", "customer confirmed the card was stolen")

    status, reviewer, reviewed_at, notes = _alert(pg_conn, schema, "TX_A")
    assert (status, reviewer, notes) == ("confirmed", "alice", "customer confirmed the card was stolen")
    assert reviewed_at == review.reviewed_at and review.previous_status == "pending"
    assert _labels(pg_conn, schema, "TX_A") == [(True, "analyst")]
    assert pending_alerts(conn)["transaction_id"].tolist() == ["TX_B"]
    assert count_rows(pg_conn, schema, "audit_log", "event_type = 'alert_reviewed' AND actor = 'alice'") == 1


def test_a_second_review_replaces_the_first(pg_conn, schema, conn, planted):
    review_alert(conn, "TX_B", "confirmed", "alice")
    review_alert(conn, "TX_B", "false_positive", "bob", "merchant refund, not fraud")

    assert _alert(pg_conn, schema, "TX_B")[:2] == ("false_positive", "bob")
    assert _labels(pg_conn, schema, "TX_B") == [(False, "analyst")]


@pytest.mark.parametrize("transaction_id, status, reviewer, message", [
    ("TX_NOPE", "confirmed", "alice", "transaction_id='TX_NOPE' is not a known transaction"),
    ("TX_OK", "confirmed", "alice", "transaction_id='TX_OK' has no fraud alert"),
    ("TX_A", "maybe", "alice", "status='maybe' must be one of confirmed, false_positive"),
    ("TX_A", "confirmed", " ", "reviewer must not be empty"),
])
def test_bad_reviews_are_named_and_change_nothing(pg_conn, schema, conn, planted, transaction_id, status, reviewer,
                                                  message):
    with pytest.raises(ReviewError, match=message):
        review_alert(conn, transaction_id, status, reviewer)
    assert count_rows(pg_conn, schema, "labels") == 0
    assert count_rows(pg_conn, schema, "fraud_alerts", "alert_status = 'pending'") == 2


def test_cli(pg_conn, schema, planted, capsys):
    assert main(["list", "--pg-schema", schema]) == 0
    assert "TX_A" in capsys.readouterr().out
    assert main(["review", "TX_A", "--status", "false_positive", "--reviewer", "carol", "--note", "ok",
                 "--pg-schema", schema]) == 0
    assert "pending -> false_positive" in capsys.readouterr().out
    assert main(["review", "TX_NOPE", "--status", "confirmed", "--reviewer", "carol", "--pg-schema", schema]) == 2
    assert "transaction_id='TX_NOPE'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["review", "TX_A", "--status", "maybe", "--reviewer", "carol", "--pg-schema", schema])
    assert "argument --status" in capsys.readouterr().err
