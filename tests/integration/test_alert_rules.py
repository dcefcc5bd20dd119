"""monitoring.alerts against the real stack: planted conditions fire once (audit_log, webhook),
the cooldown holds across runs, and fires again only after it expired."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

from fraudops.health import check_postgres, check_redis
from monitoring.alerts import FIRED_EVENT, main, run_once
from monitoring.storage import MetricRow, connect_schema, insert_metric_rows
from tests.monitoring_support import count_rows, create_schema, drop_schema, insert_rows, insert_scored

pytestmark = pytest.mark.integration
ONLY_POSTGRES = {"postgres": check_postgres}


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"alerts_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


def _scored(specs, flagged=True) -> pd.DataFrame:
    """Scored rows from (transaction_id, user_id, amount, minutes ago)."""
    now = datetime.now(UTC)
    return pd.DataFrame([{
        "transaction_id": tid, "user_id": user, "amount": amount, "currency": "USD", "merchant": "Shop",
        "transaction_time": now - timedelta(minutes=ago), "country": "US", "transaction_type": "purchase",
        "fraud_score": 0.95 if flagged else 0.01, "is_fraud": flagged, "model_version": "1",
        "scored_at": now - timedelta(minutes=ago) + timedelta(seconds=1)} for tid, user, amount, ago in specs])


@pytest.fixture
def planted(pg_conn, schema):
    """A high-value fraud alert and three alerts of one user within six minutes."""
    rows = _scored([("TX_HV", "U_BIG", 9_000.0, 20), ("TX_R1", "U_RAPID", 12.0, 8), ("TX_R2", "U_RAPID", 15.0, 5),
                    ("TX_R3", "U_RAPID", 900.0, 2)])
    insert_scored(pg_conn, schema, rows)
    return rows


def _fired(pg_conn, schema) -> list[dict]:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT details FROM "{schema}".audit_log WHERE event_type = %s ORDER BY audit_id', (FIRED_EVENT,))
        rows = [r[0] for r in cur.fetchall()]
    pg_conn.commit()
    return rows


def test_planted_conditions_fire_once(settings, pg_conn, schema, planted):
    first = run_once(settings, schema, checks=ONLY_POSTGRES)
    second = run_once(settings, schema, checks=ONLY_POSTGRES)

    assert sorted(f.key for f in first) == ["high_value_fraud:TX_HV", "rapid_fraud_sequence:U_RAPID"]
    assert second == []
    audit = _fired(pg_conn, schema)
    assert sorted(d["key"] for d in audit) == ["high_value_fraud:TX_HV", "rapid_fraud_sequence:U_RAPID"]
    rapid = next(d for d in audit if d["rule"] == "rapid_fraud_sequence")
    assert rapid["details"]["transaction_ids"] == ["TX_R1", "TX_R2", "TX_R3"]
    assert rapid["webhook"] == "not configured" and rapid["severity"] == "critical"


def test_a_key_fires_again_after_its_cooldown(settings, pg_conn, schema, planted):
    run_once(settings, schema, checks=ONLY_POSTGRES)
    with pg_conn.cursor() as cur:  # the rapid-sequence firing happened 7 hours ago (cooldown 6 h)
        cur.execute(f"UPDATE \"{schema}\".audit_log SET created_at = now() - interval '7 hours' "
                    "WHERE details->>'rule' = 'rapid_fraud_sequence'")
    pg_conn.commit()

    again = run_once(settings, schema, checks=ONLY_POSTGRES)

    assert [f.key for f in again] == ["rapid_fraud_sequence:U_RAPID"]
    assert len(_fired(pg_conn, schema)) == 3


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_firings_are_posted_to_the_webhook(settings, pg_conn, schema, planted):
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fired = run_once(settings, schema, checks=ONLY_POSTGRES, webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
    finally:
        server.shutdown()
        server.server_close()

    assert sorted(p["key"] for p in _Receiver.received) == sorted(f.key for f in fired)
    assert {p["rule"] for p in _Receiver.received} == {"high_value_fraud", "rapid_fraud_sequence"}
    assert {d["webhook"] for d in _fired(pg_conn, schema)} == {"HTTP 200"}


def test_a_broken_webhook_is_recorded_and_still_deduplicated(settings, pg_conn, schema, planted):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    dead_url = f"http://127.0.0.1:{server.server_port}/hook"
    server.server_close()  # nothing listens there any more

    assert len(run_once(settings, schema, checks=ONLY_POSTGRES, webhook_url=dead_url)) == 2
    assert run_once(settings, schema, checks=ONLY_POSTGRES, webhook_url=dead_url) == []
    assert all(d["webhook"].startswith("failed:") for d in _fired(pg_conn, schema))


def test_drift_check_result_fires_once(settings, pg_conn, schema):
    conn = connect_schema(settings, schema)
    try:
        labels = {"model_name": "fraud-detector", "model_version": "7", "drifted_columns": ["amount", "cat_currency"],
                  "run_id": "abc", "window": "24h"}
        insert_metric_rows(conn, "drift", [MetricRow("dataset_drift", 1.0, labels)])
        conn.commit()
    finally:
        conn.close()

    assert [f.key for f in run_once(settings, schema, checks=ONLY_POSTGRES)] == ["drift_detected:fraud-detector/7"]
    assert run_once(settings, schema, checks=ONLY_POSTGRES) == []


def test_a_drift_firing_can_start_a_retrain(settings, pg_conn, schema, tmp_path):
    conn = connect_schema(settings, schema)
    try:
        insert_metric_rows(conn, "drift", [MetricRow("dataset_drift", 1.0, {"model_name": "m", "model_version": "1"})])
        conn.commit()
    finally:
        conn.close()
    started: list = []

    run_once(settings, schema, checks=ONLY_POSTGRES, retrain_on_drift=True, started=started, retrain_log_dir=tmp_path)

    (process,) = started
    assert process.wait(timeout=300) == 2  # retrain --if-drift ran: drift found, but this schema holds no traffic
    (log_file,) = tmp_path.glob("retrain-*.log")
    assert f"pg_schema='{schema}' holds no scored transactions" in log_file.read_text()
    assert count_rows(pg_conn, schema, "audit_log", "event_type = 'retrain_triggered'") == 1
    assert run_once(settings, schema, checks=ONLY_POSTGRES, retrain_on_drift=True, started=started,
                    retrain_log_dir=tmp_path) == []
    assert len(started) == 1


def test_a_service_down_fires_once(settings, pg_conn, schema):
    unreachable = dataclasses.replace(settings, redis_port=1)  # nothing listens on port 1
    checks = {"redis": lambda _settings: check_redis(unreachable)}

    first = run_once(settings, schema, checks=checks)
    assert [f.key for f in first] == ["service_down:redis"]
    assert run_once(settings, schema, checks=checks) == []


def test_fraud_rate_spike_and_model_degradation(settings, pg_conn, schema):
    flagged = _scored([(f"TX_F{i}", f"U{i}", 20.0, 3) for i in range(40)])
    clean = _scored([(f"TX_C{i}", f"V{i}", 20.0, 3) for i in range(40)], flagged=False)
    insert_scored(pg_conn, schema, pd.concat([flagged, clean], ignore_index=True))
    labels = pd.DataFrame({"transaction_id": pd.concat([flagged, clean])["transaction_id"], "is_fraud": False,
                           "source": "analyst", "labeled_at": datetime.now(UTC)})
    insert_rows(pg_conn, schema, "labels", labels)  # every flagged row was a false positive

    keys = {f.key for f in run_once(settings, schema, checks=ONLY_POSTGRES)}

    assert {"fraud_rate_spike", "model_degradation"} <= keys
    assert count_rows(pg_conn, schema, "audit_log", "details->>'key' = 'model_degradation'") == 1


def test_cli_once_and_named_errors(schema, planted, capsys):
    assert main(["--once", "--pg-schema", schema, "--high-value-amount", "100000"]) == 0
    assert "rapid_fraud_sequence" in capsys.readouterr().out
    assert main(["--once", "--pg-schema", schema, "--min-precision", "2"]) == 2
    assert "--min-precision=2.0" in capsys.readouterr().err
