"""The decision of a batch of requests: the stream's parser, features, model and score.

:meth:`DecisionEngine.decide` takes requests that decisions.batcher grouped (at most one per
user and per transaction_id, so every request sees every earlier decision of its user, as a
sequence of single decisions would) and, for them all at once:
  1. types the records the endpoint validated (fraudops.contract.messages.validate_message)
     in THE contract's frame (records_frame, what the streaming job's frame parser builds):
     the same values, the same types;
  2. answers the transaction_ids already decided from their records (decisions.records): the
     same request gets the stored decision back, another body under that id a conflict;
  3. features.stream.stream_features from the online feature store and the merchant snapshot,
     the registry pyfunc of the served version (streaming.scoring_pass.worker_model), the
     top contributing features (fraudops.modeling.explain), the policy (decisions.policy);
  4. writes the events to the feature store at once (the customer's next transaction sees them),
     then the decision records and the unpublished messages, then produces to Kafka.
A feature store or model that fails answers with the degraded mode (decisions.policy); nothing
is half-written: the events reach the store only with their decision.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from decisions.policy import (
    FEATURE_STORE_UNAVAILABLE,
    MODEL_UNAVAILABLE,
    Thresholds,
    decide,
    degraded_decision,
)
from decisions.records import DecisionRecords, request_hash
from features.definition import FEATURE_COLUMNS
from features.stream import featured_frame, remember_events, stream_feature_columns
from features.user_state import event_arrays
from fraudops.contract.decisions import decided_message
from fraudops.contract.messages import TRANSACTION_COLUMNS, records_frame
from fraudops.modeling.explain import alert_reasons_json
from rules.policy import BUDGET_MARK, apply_rules

log = logging.getLogger("decisions.engine")

QUEUED, TAKEN, ABANDONED, DONE = "queued", "taken", "abandoned", "done"


@dataclass
class Pending:
    """One request on its way: the raw body, its validated record, and what it gets back."""

    body: bytes
    record: dict  # fraudops.contract.messages.validate_record output
    received: float  # time.perf_counter() at arrival
    deadline: float  # perf_counter() past which a queued request gets the degraded answer
    state: str = QUEUED
    result: dict | None = None  # the response body (or {"error": ...} with status)
    status: int = 200
    done: threading.Event = field(default_factory=threading.Event)
    notify: object = None  # callable() run when the answer is set (the endpoint's wake-up), or None

    @property
    def transaction_id(self) -> str:
        return self.record["transaction_id"]

    @property
    def user_id(self) -> str:
        return str(self.record["user_id"])

    def finish(self, result: dict, status: int = 200) -> None:
        self.result, self.status, self.state = result, status, DONE
        self.done.set()
        if self.notify is not None:
            self.notify()


class ServedVersion:
    """The served registry version, its loaded pyfunc and the pyfunc compiled for one-row
    latency (fraudops.modeling.compiled; None: not supported, the pyfunc scores), swapped
    together (never half)."""

    def __init__(self, served, model, scorer=None):
        self.served, self.model, self.scorer = served, model, scorer
        self.thresholds = Thresholds.of(served)

    def score(self, X) -> np.ndarray:
        """P(fraud) of the feature rows ``X`` (a frame; arrays by name for the compiled scorer):
        the compiled scorer's, equal to the pyfunc's."""
        if self.scorer is not None:
            return self.scorer.score(X)
        return np.asarray(self.model.predict(X), dtype="float64")


class DecisionEngine:
    def __init__(self, store, records: DecisionRecords, publisher, degraded_mode: str = "review",
                 rules=None, budget=None):
        self.store = store  # features.online.FeatureStore
        self.rules = rules  # rules.ruleset.RuleSetCache, or None: the model alone decides
        self.budget = budget  # rules.policy.ReviewBudget, or None: no review budget
        self.records = records
        self.publisher = publisher
        self.degraded_mode = degraded_mode
        self.version: ServedVersion | None = None  # None: no model yet (degraded: model_unavailable)
        self.merchant_snapshot = None
        self.stats = {"decided": 0, "replayed": 0, "degraded": 0, "conflicts": 0, "batches": 0}

    # ------------------------------------------------------------------ the batch
    def decide(self, batch: list[Pending]) -> None:
        """Answer every request of ``batch`` (see the module docstring); never raises."""
        self.stats["batches"] += 1
        try:
            fresh = self._answer_known(batch)
        except Exception as exc:  # noqa: BLE001 - the store is down: the degraded answer for all
            log.warning("feature store unavailable (%s): degraded decisions", _short(exc))
            self.answer_degraded(batch, FEATURE_STORE_UNAVAILABLE, write_record=False)
            return
        if not fresh:
            return
        version = self.version
        if version is None:
            self.answer_degraded(fresh, MODEL_UNAVAILABLE)
            return
        try:
            events = self._events(fresh)
            arrays = event_arrays(events)  # once, for the features and the store write
            computed = stream_feature_columns(events, self.store, self.merchant_snapshot, arrays)
            featured = featured_frame(events, computed)
        except Exception as exc:  # noqa: BLE001
            log.warning("features not computed (%s): degraded decisions", _short(exc))
            self.answer_degraded(fresh, FEATURE_STORE_UNAVAILABLE, write_record=False)
            return
        try:
            answers = self._score(featured, computed, version)
        except Exception:
            log.exception("model version %s failed to score: degraded decisions", version.served.version)
            self.answer_degraded(fresh, MODEL_UNAVAILABLE)
            return
        try:
            remember_events(self.store, events, arrays)
            self._commit(fresh, answers, version)
        except Exception as exc:  # noqa: BLE001 - not written: nothing was decided for good
            log.warning("decisions not stored (%s): degraded decisions", _short(exc))
            self.answer_degraded(fresh, FEATURE_STORE_UNAVAILABLE, write_record=False)

    def _answer_known(self, batch: list[Pending]) -> list[Pending]:
        """Answer the requests whose transaction_id has a record; the others are returned."""
        known = self.records.get_many([p.transaction_id for p in batch])
        fresh = []
        for pending in batch:
            stored = known.get(pending.transaction_id)
            if stored is None:
                fresh.append(pending)
            elif stored.request_hash == request_hash(pending.record):
                self.stats["replayed"] += 1
                pending.finish({**stored.response, "replayed": True, "latency_ms": _elapsed_ms(pending)})
            else:
                self.stats["conflicts"] += 1
                pending.finish({"error": "conflict", "reason": "transaction_id_conflict",
                                "detail": f"transaction_id {pending.transaction_id!r} was already decided "
                                          "with a different body; a new transaction needs a new id"}, 409)
        return fresh

    @staticmethod
    def _events(batch: list[Pending]) -> pd.DataFrame:
        """The batch's transactions as the stream's parser types them: the records the endpoint
        validated (validate_message, row by row what the stream's frame parser makes of the
        same body) in the contract's typed frame (records_frame, the frame parser's own)."""
        return records_frame({name: [p.record[name] for p in batch] for name in TRANSACTION_COLUMNS})

    def _score(self, featured: pd.DataFrame, computed: dict, version: ServedVersion) -> dict[str, list]:
        """Per row: fraud_score, decision, features (JSON), reasons (JSON or None), rules_fired.
        ``computed``: the same features as arrays by name (what the compiled scorer reads fastest)."""
        from streaming.scoring_pass import features_json

        score = version.score(computed if version.scorer is not None else featured[FEATURE_COLUMNS])
        decision = decide(score, version.thresholds)
        decision, rules_fired = self._apply_rules(featured, score, decision)
        # reasons for what stops or holds a payment (review, decline), as the stream explains its alerts
        return {"fraud_score": score.tolist(), "decision": list(decision), "features": features_json(featured),
                "reasons": alert_reasons_json(version.model, featured, decision != "approve"), "rules_fired": rules_fired}

    def _apply_rules(self, featured: pd.DataFrame, score: np.ndarray, decision: np.ndarray):
        """The rules and lists (rules.policy's precedence) on top of the model's decisions, then
        the review budget; returns (final decisions, rules_fired per row)."""
        final, fired = apply_rules(self.rules.ruleset if self.rules is not None else None, featured, score, decision)
        if self.budget is not None and self.budget.enabled:
            for i in np.flatnonzero(final == "review"):
                if not self.budget.admit(float(score[i])):
                    final[i] = "approve"
                    fired[i] = [*fired[i], BUDGET_MARK]
        return final, fired

    def _commit(self, batch: list[Pending], answers: dict[str, list], version: ServedVersion) -> None:
        decided_at = datetime.now(UTC).isoformat()
        entries, responses = [], []
        rows = zip(answers["decision"], answers["fraud_score"], answers["features"], answers["reasons"],
                   answers["rules_fired"], strict=True)
        for pending, (decision, fraud_score, features, reasons, rules_fired) in zip(batch, rows, strict=True):
            decided = {"decision": str(decision), "fraud_score": float(fraud_score),
                       "review_threshold": version.thresholds.review,
                       "decline_threshold": version.thresholds.decline,
                       "model_version": version.served.version,
                       "feature_set_version": version.served.feature_set_version,
                       "features": features, "reasons": reasons, "decided_at": decided_at,
                       "degraded": False, "degraded_reason": None, "rules_fired": rules_fired,
                       "rules_revision": self.rules.ruleset.revision if self.rules is not None else None}
            response = response_body(pending.record, decided)
            message = decided_message(pending.record, decided)
            entries.append((pending.transaction_id, request_hash(pending.record), response, message))
            responses.append((response, message))
        self.records.commit(entries)
        for pending, (response, message) in zip(batch, responses, strict=True):
            self.publisher.publish(pending.transaction_id, pending.user_id, message)
            self.stats["decided"] += 1
            pending.finish({**response, "latency_ms": _elapsed_ms(pending)})

    # ------------------------------------------------------------------ degraded
    def answer_timeout(self, pending: Pending) -> None:
        """A request whose budget ran out in the queue: its stored decision if its
        transaction_id has one (a retry keeps the answer given, even past its own budget; another
        body is a conflict), else the degraded answer (stored, so that a retry gets it too)."""
        from decisions.policy import TIMEOUT

        try:
            fresh = self._answer_known([pending])
        except Exception as exc:  # noqa: BLE001 - the store is down: degraded, nothing stored
            log.warning("decision records unavailable (%s): timeout answered degraded", _short(exc))
            self.answer_degraded([pending], TIMEOUT, write_record=False)
            return
        if fresh:
            self.answer_degraded(fresh, TIMEOUT)

    def answer_degraded(self, batch: list[Pending], reason: str, write_record: bool = True) -> None:
        """The degraded mode's decision for each request, published flagged degraded (the
        streaming job scores them); with ``write_record`` the decision is stored too, so that
        a retry gets the same answer."""
        decision = degraded_decision(self.degraded_mode)
        decided_at = datetime.now(UTC).isoformat()
        version = self.version
        entries = []
        for pending in batch:
            decided = {"decision": decision, "fraud_score": None,
                       "review_threshold": version.thresholds.review if version else None,
                       "decline_threshold": version.thresholds.decline if version else None,
                       "model_version": version.served.version if version else None,
                       "feature_set_version": version.served.feature_set_version if version else None,
                       "features": None, "reasons": None, "decided_at": decided_at,
                       "degraded": True, "degraded_reason": reason, "rules_fired": None, "rules_revision": None}
            response = response_body(pending.record, decided)
            message = decided_message(pending.record, decided)
            entries.append((pending, response, message))
        if write_record:
            try:
                self.records.commit([(p.transaction_id, request_hash(p.record), r, m) for p, r, m in entries])
            except Exception as exc:  # noqa: BLE001 - the answer stands; Kafka still gets it
                log.warning("degraded decisions not stored (%s)", _short(exc))
                write_record = False
        for pending, response, message in entries:
            self.publisher.publish(pending.transaction_id, pending.user_id, message, acknowledge=write_record)
            self.stats["degraded"] += 1
            pending.finish({**response, "latency_ms": _elapsed_ms(pending)})


def response_body(record: dict, decided: dict) -> dict:
    """The API's answer for one decided transaction (the stored part; latency_ms added per request)."""
    import json

    return {"transaction_id": record["transaction_id"], "decision": decided["decision"],
            "score": decided["fraud_score"],
            "thresholds": {"review": decided["review_threshold"], "decline": decided["decline_threshold"]},
            "model_version": decided["model_version"],
            "reasons": json.loads(decided["reasons"]) if decided["reasons"] else [],
            "degraded": decided["degraded"], "degraded_reason": decided["degraded_reason"],
            "rules": decided.get("rules_fired") or [], "rules_revision": decided.get("rules_revision"),
            "decided_at": decided["decided_at"], "replayed": False}


def _elapsed_ms(pending: Pending) -> float:
    return round((time.perf_counter() - pending.received) * 1000.0, 3)


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
