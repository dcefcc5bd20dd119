"""The live dashboard's numbers: throughput, end-to-end latency, alert rate, precision of reviewed
alerts, alerts by country, model versions, the latest drift check and the services' health.

Reads: PostgreSQL (through monitoring.queries and portal.queries: transactions,
monitoring_metrics, fraud_alerts, audit_log); the registry and the service checks through
:class:`SlowFacts`, refreshed in a background thread so that no page waits on them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitoring import queries as monitoring_queries
from monitoring.services import ServiceState, service_states
from portal import queries
from portal.registry_view import RegistryView, read_registry

log = logging.getLogger("portal.dashboard")

RATE_WINDOW = timedelta(minutes=5)
SUMMARY_WINDOW = timedelta(hours=1)
PRECISION_WINDOW = timedelta(days=30)
COUNTRY_WINDOW = timedelta(hours=24)
MODEL_EVENTS = ("model_switch", "model_promotion")


@dataclass(frozen=True)
class SlowFactsSnapshot:
    services: tuple[ServiceState, ...]
    registry: RegistryView | None
    checked_at: datetime | None


class SlowFacts:
    """Service health and the registry, refreshed every ``interval`` seconds in a daemon thread."""

    def __init__(self, settings, interval: float = 10.0):
        self.settings, self.interval = settings, interval
        self.snapshot = SlowFactsSnapshot((), None, None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> SlowFactsSnapshot:
        started = time.monotonic()
        services = tuple(service_states(self.settings))
        registry = read_registry(self.settings, with_metrics=False)
        self.snapshot = SlowFactsSnapshot(services, registry, datetime.now(UTC))
        log.debug("health and registry refreshed in %.2fs", time.monotonic() - started)
        return self.snapshot

    def start(self) -> None:
        def loop():
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - keep the last snapshot, try again later
                    log.warning("could not refresh health and registry: %s", exc)
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="portal-slow-facts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _ratio(numerator, denominator) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def dashboard_numbers(conn) -> dict[str, Any]:
    """Everything the dashboard shows from PostgreSQL (plain values, JSON-ready)."""
    rate = monitoring_queries.traffic_summary(conn, RATE_WINDOW)
    hour = monitoring_queries.traffic_summary(conn, SUMMARY_WINDOW)
    latency = monitoring_queries.processing_latency(conn, SUMMARY_WINDOW)
    job_p50 = monitoring_queries.latest_metric(conn, "streaming", "latency_p50_seconds", SUMMARY_WINDOW)
    job_p95 = monitoring_queries.latest_metric(conn, "streaming", "latency_p95_seconds", SUMMARY_WINDOW)
    reviewed = queries.reviewed_alert_counts(conn, PRECISION_WINDOW)
    decided = reviewed.get("confirmed", 0) + reviewed.get("false_positive", 0)
    return {
        "throughput_per_second": rate["transactions"] / RATE_WINDOW.total_seconds(),
        "transactions_last_hour": int(hour["transactions"]),
        "alerts_last_hour": int(hour["flagged"] or 0),
        "alert_rate": _ratio(hour["flagged"], hour["transactions"]),
        "latency": {"scored_p50": latency.get("p50"), "scored_p95": latency.get("p95"),
                    "job_p50": job_p50.get("metric_value"), "job_p95": job_p95.get("metric_value")},
        "pending_alerts": monitoring_queries.pending_alert_count(conn),
        "reviewed": reviewed,
        "precision_of_reviewed": _ratio(reviewed.get("confirmed", 0), decided),
        "alerts_by_country": queries.alerts_by_country(conn, COUNTRY_WINDOW),
        "throughput_series": queries.throughput_per_minute(conn, SUMMARY_WINDOW),
        "latency_series": queries.streaming_latency_series(conn, SUMMARY_WINDOW),
        "model_events": queries.audit_events(conn, MODEL_EVENTS, limit=20),
        "scoring_version": monitoring_queries.latest_scoring_version(conn),
        "drift": queries.latest_drift(conn),
    }
