"""Unit tests of the pure alert rules (monitoring.alert_rules) and the rule evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from monitoring import alert_rules as rules
from monitoring.alert_rules import RuleSettings
from monitoring.alerts import AlertInputs, evaluate_rules
from monitoring.services import ServiceState

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _alerts(*rows) -> pd.DataFrame:
    """rows: (transaction_id, user_id, amount, minutes after T0)."""
    return pd.DataFrame([{"transaction_id": t, "user_id": u, "amount": a, "currency": "USD", "fraud_score": 0.9,
                          "transaction_time": T0 + timedelta(minutes=m)} for t, u, a, m in rows],
                        columns=["transaction_id", "user_id", "amount", "currency", "fraud_score", "transaction_time"])


def test_high_value_fraud_fires_per_transaction_at_or_above_the_amount():
    firings = rules.high_value_fraud(_alerts(("T1", "U1", 4999.99, 0), ("T2", "U1", 5000, 1), ("T3", "U2", 9000, 2)), 5000)
    assert [f.key for f in firings] == ["high_value_fraud:T2", "high_value_fraud:T3"]
    assert firings[1].details["amount"] == 9000.0 and firings[1].severity == "critical"


def test_high_value_fraud_on_no_alerts():
    assert rules.high_value_fraud(_alerts(), 5000) == []


def test_rapid_sequence_needs_count_alerts_within_the_window():
    alerts = _alerts(("A1", "U1", 10, 0), ("A2", "U1", 10, 4), ("A3", "U1", 10, 9),   # 3 in 9 min
                     ("B1", "U2", 10, 0), ("B2", "U2", 10, 6), ("B3", "U2", 10, 16),  # never 3 in 10 min
                     ("C1", "U3", 10, 0), ("C2", "U3", 10, 1))                       # only 2
    firings = rules.rapid_fraud_sequence(alerts, count=3, window=timedelta(minutes=10))
    assert [f.key for f in firings] == ["rapid_fraud_sequence:U1"]
    assert firings[0].details["transaction_ids"] == ["A1", "A2", "A3"]


def test_rapid_sequence_includes_every_alert_of_the_burst_and_ignores_input_order():
    alerts = _alerts(("A4", "U1", 10, 7), ("A1", "U1", 10, 0), ("A3", "U1", 10, 5), ("A2", "U1", 10, 2))
    (firing,) = rules.rapid_fraud_sequence(alerts, count=3, window=timedelta(minutes=10))
    assert firing.details["transaction_ids"] == ["A1", "A2", "A3", "A4"]


@pytest.mark.parametrize("recent, baseline, fires", [
    ({"transactions": 100, "flagged": 20}, {"transactions": 5000, "flagged": 50}, True),   # 20% vs 1%
    ({"transactions": 100, "flagged": 20}, {"transactions": 5000, "flagged": 500}, False),  # 20% vs 10%: < 3x
    ({"transactions": 100, "flagged": 4}, {"transactions": 5000, "flagged": 5}, False),    # 4% < 5% floor
    ({"transactions": 40, "flagged": 30}, {"transactions": 5000, "flagged": 5}, False),    # too few rows
    ({"transactions": 100, "flagged": 20}, {"transactions": 0, "flagged": 0}, True),        # no baseline
])
def test_fraud_rate_spike(recent, baseline, fires):
    firings = rules.fraud_rate_spike(recent, baseline, RuleSettings())
    assert bool(firings) is fires
    if fires:
        assert firings[0].key == "fraud_rate_spike" and firings[0].details["rate"] == pytest.approx(0.2)


def test_model_degradation_needs_enough_labels_and_a_low_metric():
    settings = RuleSettings(min_precision=0.5, min_recall=0.5, min_labelled=30)
    low = {"precision": 0.3, "recall": 0.8, "f1": 0.44, "labelled_rows": 100.0}
    assert rules.model_degradation(low, settings)[0].key == "model_degradation"
    assert "precision 0.300" in rules.model_degradation(low, settings)[0].message
    assert rules.model_degradation({**low, "labelled_rows": 29.0}, settings) == []
    assert rules.model_degradation({**low, "precision": 0.6}, settings) == []
    assert rules.model_degradation({**low, "precision": None}, settings) == []


def test_drift_detected_fires_per_model_version():
    latest = {"metric_value": 1.0, "recorded_at": T0,
              "labels": {"model_name": "fraud-detector", "model_version": "4", "drifted_columns": ["amount"], "run_id": "r"}}
    (firing,) = rules.drift_detected(latest)
    assert firing.key == "drift_detected:fraud-detector/4" and firing.details["drifted_columns"] == ["amount"]
    assert rules.drift_detected({**latest, "metric_value": 0.0}) == []
    assert rules.drift_detected({}) == []


def test_service_down_ignores_a_never_started_job():
    states = [ServiceState("redis", False, False, "connection refused"), ServiceState("streaming", True, False, "OFF"),
              ServiceState("kafka", True, True, "1 broker")]
    assert [f.key for f in rules.service_down(states)] == ["service_down:redis"]


def test_cooldowns_have_a_default_for_unknown_rules():
    settings = RuleSettings()
    assert settings.cooldown("high_value_fraud") == timedelta(days=7)
    assert settings.cooldown("something_new") == timedelta(hours=1)


def test_evaluate_rules_combines_every_rule():
    inputs = AlertInputs(
        alerts=_alerts(("A1", "U1", 8000, 0), ("A2", "U1", 10, 1), ("A3", "U1", 10, 2)),
        recent_traffic={"transactions": 100, "flagged": 30}, baseline_traffic={"transactions": 1000, "flagged": 10},
        performance={"precision": 0.1, "recall": 0.9, "f1": 0.18, "labelled_rows": 50.0},
        latest_drift={"metric_value": 1.0, "labels": {"model_name": "m", "model_version": "1"}},
        services=[ServiceState("mlflow", False, False, "down")],
    )
    assert [f.rule for f in evaluate_rules(inputs, RuleSettings())] == [
        "service_down", "high_value_fraud", "rapid_fraud_sequence", "fraud_rate_spike", "model_degradation",
        "drift_detected"]
