"""Alert rules: small pure functions from query results to :class:`Firing` s.

Each firing carries a ``key``, what "the same condition" means: monitoring.alerts fires a key at
most once per its rule's cooldown (:attr:`RuleSettings.cooldowns`), so a condition that lasts does
not fire again every interval. The rules:

  high_value_fraud      an alert of at least ``high_value_amount`` (as sent, in the transaction's
                        currency; the project has no FX table)                    key per transaction
  fraud_rate_spike      flagged share of the last ``spike_window`` >= ``spike_min_rate`` and
                        >= ``spike_factor`` x the rest of the last 24 h             one key
  rapid_fraud_sequence  ``rapid_count`` alerts of one user within ``rapid_window``  key per user
  model_degradation     precision or recall of the decisions on labelled rows below the minimum,
                        with at least ``min_labelled`` labelled rows               one key
  drift_detected        the latest drift check (pipelines.drift) found dataset drift  key per model version
  service_down          a service check fails (a streaming job never started is not down)  key per service
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class Firing:
    """One alert to deliver."""

    rule: str
    key: str
    severity: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


def _default_cooldowns() -> dict[str, timedelta]:
    return {
        "high_value_fraud": timedelta(days=7),
        "fraud_rate_spike": timedelta(hours=1),
        "rapid_fraud_sequence": timedelta(hours=6),
        "model_degradation": timedelta(hours=6),
        "drift_detected": timedelta(hours=24),
        "service_down": timedelta(hours=1),
    }


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds, windows and cooldowns of the rules (defaults in the module docstring's terms)."""

    high_value_amount: float = 5_000.0
    spike_window: timedelta = timedelta(minutes=15)
    spike_factor: float = 3.0
    spike_min_rate: float = 0.05
    spike_min_transactions: int = 50
    rapid_count: int = 3
    rapid_window: timedelta = timedelta(minutes=10)
    min_precision: float = 0.5
    min_recall: float = 0.5
    min_labelled: int = 30
    performance_window: timedelta = timedelta(days=7)
    alert_lookback: timedelta = timedelta(hours=1)
    drift_max_age: timedelta = timedelta(hours=24)
    cooldowns: Mapping[str, timedelta] = field(default_factory=_default_cooldowns)

    def cooldown(self, rule: str) -> timedelta:
        return self.cooldowns.get(rule, timedelta(hours=1))


DEFAULT_RULE_SETTINGS = RuleSettings()


def _plain(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def high_value_fraud(alerts: pd.DataFrame, min_amount: float) -> list[Firing]:
    """One firing per alert whose amount is at least ``min_amount``.

    Args:
        alerts: fraud alerts with transaction_id, user_id, amount, currency, fraud_score.
    """
    big = alerts[pd.to_numeric(alerts["amount"]) >= min_amount] if not alerts.empty else alerts
    return [
        Firing("high_value_fraud", f"high_value_fraud:{row.transaction_id}", CRITICAL,
               f"fraud alert of {row.amount:,.2f} {row.currency} for {row.user_id} "
               f"(transaction {row.transaction_id}, score {row.fraud_score:.3f})",
               {"transaction_id": row.transaction_id, "user_id": row.user_id, "amount": float(row.amount),
                "currency": row.currency, "fraud_score": float(row.fraud_score), "min_amount": min_amount})
        for row in big.itertuples(index=False)
    ]


def fraud_rate_spike(recent: Mapping[str, Any], baseline: Mapping[str, Any], settings: RuleSettings) -> list[Firing]:
    """Fire when the recent flagged share is high in absolute terms and against the baseline.

    Args:
        recent: {"transactions", "flagged"} of the last ``spike_window``.
        baseline: the same counts for the rest of the last 24 h (no rows: only the absolute test).
    """
    count, flagged = int(recent.get("transactions") or 0), int(recent.get("flagged") or 0)
    if count < settings.spike_min_transactions:
        return []
    rate = flagged / count
    base_count = int(baseline.get("transactions") or 0)
    base_rate = (int(baseline.get("flagged") or 0) / base_count) if base_count else None
    if rate < settings.spike_min_rate or (base_rate is not None and rate < settings.spike_factor * base_rate):
        return []
    against = f"{base_rate:.2%} before" if base_rate is not None else "no baseline"
    return [Firing("fraud_rate_spike", "fraud_rate_spike", CRITICAL,
                   f"{rate:.1%} of the last {count} transactions flagged ({against})",
                   {"rate": rate, "transactions": count, "flagged": flagged, "baseline_rate": base_rate,
                    "factor": settings.spike_factor, "window_seconds": settings.spike_window.total_seconds()})]


def rapid_fraud_sequence(alerts: pd.DataFrame, count: int, window: timedelta) -> list[Firing]:
    """One firing per user with ``count`` alerts whose transaction times fit in ``window``.

    Args:
        alerts: fraud alerts with user_id, transaction_id, transaction_time.
    """
    if alerts.empty or count < 1:
        return []
    frame = alerts.assign(t=pd.to_datetime(alerts["transaction_time"], utc=True)).sort_values(["user_id", "t"])
    firings = []
    for user, rows in frame.groupby("user_id", sort=True):
        burst = _first_burst(rows, count, window)
        if burst is not None:
            firings.append(Firing(
                "rapid_fraud_sequence", f"rapid_fraud_sequence:{user}", CRITICAL,
                f"{len(burst)} fraud alerts for {user} within {window}",
                {"user_id": user, "transaction_ids": burst["transaction_id"].tolist(),
                 "first": _plain(burst["t"].iloc[0]), "last": _plain(burst["t"].iloc[-1])}))
    return firings


def _first_burst(rows: pd.DataFrame, count: int, window: timedelta) -> pd.DataFrame | None:
    times = rows["t"].tolist()
    for start in range(len(times) - count + 1):
        if times[start + count - 1] - times[start] <= window:
            end = start + count
            while end < len(times) and times[end] - times[start] <= window:
                end += 1
            return rows.iloc[start:end]
    return None


def model_degradation(performance: Mapping[str, Any], settings: RuleSettings) -> list[Firing]:
    """Fire when precision or recall on enough labelled rows falls below its minimum.

    Args:
        performance: monitoring.performance.decision_performance output.
    """
    if (performance.get("labelled_rows") or 0) < settings.min_labelled:
        return []
    low = {name: performance.get(name) for name, minimum in
           (("precision", settings.min_precision), ("recall", settings.min_recall))
           if performance.get(name) is not None and performance[name] < minimum}
    if not low:
        return []
    text = ", ".join(f"{k} {v:.3f}" for k, v in low.items())
    return [Firing("model_degradation", "model_degradation", WARNING,
                   f"model performance on {performance['labelled_rows']:.0f} labelled rows: {text}",
                   {**{k: performance.get(k) for k in ("precision", "recall", "f1", "labelled_rows")},
                    "min_precision": settings.min_precision, "min_recall": settings.min_recall})]


def drift_detected(latest_drift: Mapping[str, Any]) -> list[Firing]:
    """Fire when the latest drift check's ``dataset_drift`` is 1.

    Args:
        latest_drift: the newest monitoring_metrics row (source drift, metric dataset_drift):
            metric_value, labels (model_name, model_version, drifted_columns, run_id), recorded_at;
            empty when there is none.
    """
    if not latest_drift or latest_drift.get("metric_value") != 1:
        return []
    labels = latest_drift.get("labels") or {}
    model = f"{labels.get('model_name', '?')}/{labels.get('model_version', '?')}"
    columns = labels.get("drifted_columns") or []
    return [Firing("drift_detected", f"drift_detected:{model}", WARNING,
                   f"data drift against the reference of {model}: {len(columns)} drifted column(s) "
                   f"({', '.join(columns[:8])}{', ...' if len(columns) > 8 else ''})",
                   {"model": model, "drifted_columns": columns, "run_id": labels.get("run_id"),
                    "window": labels.get("window"), "recorded_at": _plain(latest_drift.get("recorded_at"))})]


def service_down(states: Iterable) -> list[Firing]:
    """One firing per service that is down.

    Args:
        states: objects with ``name``, ``up`` and ``detail`` (monitoring.services.ServiceState).
    """
    return [Firing("service_down", f"service_down:{s.name}", CRITICAL, f"{s.name} is down: {s.detail}",
                   {"service": s.name, "detail": s.detail}) for s in states if not s.up]
