"""THE decided-transaction contract: what the decision service publishes, what the job records.

The decision service (decisions/) answers ``POST /v1/decisions`` synchronously, then publishes
each decided transaction to KAFKA_DECISIONS_TOPIC (key = user_id, as the transactions topic).
The streaming job reads that topic beside the transactions topic and records the row exactly
once, with the service's score, features and decision; it never decides a second time.

Wire format (UTF-8 JSON object): the transaction's contract fields at the top level, exactly
as :func:`fraudops.contract.messages.serialize_message` writes them (so the job parses them with
THE message validator, like any transaction), plus one object under ``"decision"``::

    {"transaction_id": "TXN_1", "user_id": "USER_1", "amount": 52.35, ...,
     "decision": {"decision": "review", "fraud_score": 0.71, "review_threshold": 0.42,
                  "decline_threshold": 0.93, "model_version": "3", "feature_set_version": "v4",
                  "features": {...}, "reasons": [...], "decided_at": "2026-12-04T18:00:00.123456+00:00",
                  "degraded": false, "degraded_reason": null,
                  "rules_fired": [{"name": "big_new_country", "version": 2, "action": "review", "shadow": false}]}}

``rules_fired``: the rules (rules/) that fired and the list hits (``list:<name>``), with their
versions; shadow rules are listed with ``"shadow": true`` and never changed the decision.

``degraded`` true: the service could not score (feature store or model unavailable, or its
budget spent) and answered with its degraded mode; then fraud_score, features and reasons are
null and the job scores the transaction itself, keeping the service's decision beside its score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fraudops.contract.messages import loads_strict, serialize_message
from fraudops.contract.tables import DECISIONS
from fraudops.jsonutil import strict_dumps

DECISION_KEY = "decision"
DEGRADED_MODES = ("review", "approve-and-flag")
# the columns of a decided row that the decision object carries (besides the transaction's own)
DECIDED_COLUMNS = ("decision", "fraud_score", "review_threshold", "decline_threshold", "model_version",
                   "feature_set_version", "features", "reasons", "decided_at", "degraded", "degraded_reason",
                   "rules_fired")
# JSON-valued columns (objects or lists on the wire, JSON text in the rows)
_JSON_COLUMNS = ("features", "reasons", "rules_fired")


def decided_message(record: Mapping[str, Any], decided: Mapping[str, Any]) -> bytes:
    """The Kafka value of a decided transaction: ``record`` (a validated transaction, see
    fraudops.contract.messages.validate_record) plus ``decided`` (DECIDED_COLUMNS; features and
    reasons as JSON text or objects) under ``"decision"``."""
    body = json.loads(serialize_message(record))
    decision = {key: decided.get(key) for key in DECIDED_COLUMNS}
    for key in _JSON_COLUMNS:
        if isinstance(decision[key], str):
            decision[key] = json.loads(decision[key])
    body[DECISION_KEY] = decision
    return strict_dumps(body, separators=(",", ":")).encode("utf-8")


def parse_decision(raw: bytes | str | None) -> tuple[dict | None, str | None]:
    """The ``"decision"`` object of a decided message, checked: ``(decided, None)`` with
    DECIDED_COLUMNS (features and reasons back to JSON text), or ``(None, reason)`` such as
    ``bad_decision:missing`` or ``bad_decision:fraud_score``. Never raises."""
    if raw is None:
        return None, "empty_message"
    text = bytes(raw).decode("utf-8", "replace") if isinstance(raw, bytes | bytearray | memoryview) else raw
    obj, reason = loads_strict(text)
    if reason is not None:
        return None, reason
    decided = obj.get(DECISION_KEY) if isinstance(obj, dict) else None
    if not isinstance(decided, dict):
        return None, "bad_decision:missing"
    if decided.get("decision") not in DECISIONS:
        return None, "bad_decision:decision"
    degraded = decided.get("degraded")
    if not isinstance(degraded, bool):
        return None, "bad_decision:degraded"
    if not isinstance(decided.get("decided_at"), str):
        return None, "bad_decision:decided_at"
    if not degraded:
        for key in ("fraud_score", "review_threshold"):
            value = decided.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return None, f"bad_decision:{key}"
        if not isinstance(decided.get("features"), dict) or decided.get("model_version") in (None, ""):
            return None, "bad_decision:features"
    rules_fired = decided.get("rules_fired")
    if rules_fired is not None and not (isinstance(rules_fired, list) and all(isinstance(r, dict) for r in rules_fired)):
        return None, "bad_decision:rules_fired"
    out = {key: decided.get(key) for key in DECIDED_COLUMNS}
    for key in _JSON_COLUMNS:
        if out[key] is not None:
            out[key] = strict_dumps(out[key], separators=(",", ":"))
    return out, None
