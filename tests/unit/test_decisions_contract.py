"""The decided-transaction contract and the decision policy: pure functions, no services."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decisions.policy import (
    FALLBACK_DECLINE_THRESHOLD,
    Thresholds,
    check_degraded_mode,
    decide,
    degraded_decision,
)
from decisions.records import request_hash
from fraudops.contract.decisions import decided_message, parse_decision
from fraudops.contract.messages import validate_message, validate_messages_frame
from fraudops.modeling.registry import ServedModel
from pipelines.evaluation_metrics import choose_decline_threshold

pytestmark = pytest.mark.unit

BODY = {"transaction_id": "TXN_1", "user_id": "U1", "amount": 52.35, "currency": "USD", "merchant": "Walmart",
        "transaction_time": "2026-01-15T14:30:00", "country": "US", "transaction_type": "purchase"}
DECIDED = {"decision": "review", "fraud_score": 0.7123456789012345, "review_threshold": 0.5,
           "decline_threshold": 0.9, "model_version": "3", "feature_set_version": "fs-v2",
           "features": '{"amount":52.35,"hour":14.0}', "reasons": '[{"name":"amount","value":52.35,"contribution":0.4}]',
           "decided_at": "2026-01-15T14:30:00.001+00:00", "degraded": False, "degraded_reason": None}


def record():
    rec, reason = validate_message(json.dumps(BODY))
    assert reason is None
    return rec


def test_a_decided_message_parses_back_to_the_same_decision_and_the_same_transaction():
    message = decided_message(record(), DECIDED)
    decided, reason = parse_decision(message)
    assert reason is None
    assert decided["fraud_score"] == DECIDED["fraud_score"] and decided["decision"] == "review"
    assert json.loads(decided["features"]) == json.loads(DECIDED["features"])
    # the job parses the transaction with THE message contract: the decision object is ignored there
    frame = validate_messages_frame([message])
    plain = validate_messages_frame([json.dumps(BODY).encode()])
    assert frame.drop(columns=[]).equals(plain)


@pytest.mark.parametrize("change,reason", [
    ({"decision": "maybe"}, "bad_decision:decision"),
    ({"degraded": "no"}, "bad_decision:degraded"),
    ({"fraud_score": None}, "bad_decision:fraud_score"),
    ({"fraud_score": True}, "bad_decision:fraud_score"),
    ({"review_threshold": float("nan")}, "bad_decision:review_threshold"),
    ({"features": None}, "bad_decision:features"),
    ({"decided_at": 5}, "bad_decision:decided_at"),
])
def test_a_broken_decision_is_rejected_with_a_named_reason(change, reason):
    body = json.loads(decided_message(record(), DECIDED))
    body["decision"].update(change)
    text = json.dumps(body, allow_nan=True)
    assert parse_decision(text) == (None, reason)


def test_a_message_without_a_decision_or_with_duplicate_keys_is_rejected():
    assert parse_decision(json.dumps(BODY)) == (None, "bad_decision:missing")
    assert parse_decision(b'{"a": 1, "a": 2}')[1] == "duplicate_key:a"


def test_a_degraded_decision_needs_no_score():
    decided = {**DECIDED, "fraud_score": None, "features": None, "reasons": None, "degraded": True,
               "degraded_reason": "model_unavailable", "review_threshold": None}
    parsed, reason = parse_decision(decided_message(record(), decided))
    assert reason is None and parsed["degraded"] is True and parsed["fraud_score"] is None


def test_thresholds_come_from_the_version_and_fall_back_for_old_versions():
    old = ServedModel("m", "1", "models:/m/1", 0.4, "fs", None)
    assert Thresholds.of(old) == Thresholds(0.4, FALLBACK_DECLINE_THRESHOLD)
    assert Thresholds.of(ServedModel("m", "2", "models:/m/2", 0.95, "fs", None)) == Thresholds(0.95, 0.95)
    tagged = ServedModel("m", "3", "models:/m/3", 0.4, "fs", None, decline_threshold=0.8)
    assert Thresholds.of(tagged) == Thresholds(0.4, 0.8)
    assert list(decide(np.array([0.1, 0.4, 0.79, 0.8, 1.0]), Thresholds.of(tagged))) == \
        ["approve", "review", "review", "decline", "decline"]


def test_degraded_modes():
    assert degraded_decision("review") == "review" and degraded_decision("approve-and-flag") == "approve"
    with pytest.raises(ValueError, match="DECISION_DEGRADED_MODE='decline'"):
        check_degraded_mode("decline")


def test_the_request_hash_ignores_unknown_fields_and_layout_but_not_values():
    a, _ = validate_message(json.dumps({**BODY, "is_fraud_actual": True}))
    b, _ = validate_message(json.dumps(BODY, indent=3))
    c, _ = validate_message(json.dumps({**BODY, "amount": 52.36}))
    assert request_hash(a) == request_hash(b) != request_hash(c)


def test_the_decline_threshold_reaches_the_precision_or_declines_almost_nothing():
    labels = np.array([0] * 90 + [1] * 10)
    scores = np.concatenate([np.linspace(0, 0.6, 90), np.linspace(0.5, 1.0, 10)])
    threshold = choose_decline_threshold(labels, scores, review_threshold=0.3)
    flagged = scores >= threshold
    assert labels[flagged].mean() >= 0.9 and threshold >= 0.3
    assert flagged.sum() == max(k for k in range(1, 101) if labels[np.argsort(-scores)[:k]].mean() >= 0.9)
    noisy = np.array([1, 0, 1, 0]), np.array([0.9, 0.9, 0.8, 0.8])
    assert choose_decline_threshold(*noisy, review_threshold=0.5) > 0.9
