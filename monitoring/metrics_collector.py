"""Operational metrics of the platform, collected every --interval seconds, stored in PostgreSQL
and served in the Prometheus text format (for Prometheus and Grafana).

Reads:  PostgreSQL ``<pg-schema>`` (transactions, fraud_alerts, labels); the MLflow registry
        (Production version of MODEL_NAME); the services, through fraudops.health.
Writes: monitoring_metrics rows of source ``collector`` (one per metric and label set, each
        collection); ``http://127.0.0.1:<port>/metrics`` (loopback by default; --host in a
        container) while it runs.

The seed's list, as :data:`METRICS` (Prometheus names get the ``fraudops_`` prefix):
transactions per minute (last 5 minutes), average amount, fraud detection rate and average fraud
score (last hour), daily count (since midnight UTC), pending alerts, precision / recall / F1 of the
stream's decisions on labelled rows (last 7 days), active model version (registry) and the version
that scored the latest row, service status (1 up, 0 down or not started), processing latency
(Kafka produce time to scoring, last hour), the latest drift check's drift share and verdict.
Amounts are as sent, in mixed currencies.

Run:
    python -m monitoring.metrics_collector --interval 60            # serves 127.0.0.1:9108/metrics
    python -m monitoring.metrics_collector --once                   # one collection, printed
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from monitoring.storage import MetricRow, connect_schema, finite_or_none, insert_metric_rows

log = logging.getLogger("monitoring.metrics_collector")

SOURCE = "collector"
PROMETHEUS_PREFIX = "fraudops_"
DEFAULT_PORT = 9108
LOOPBACK = "127.0.0.1"

# name -> (help text, Prometheus label names): the catalogue, written once.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "transactions_per_minute": ("transactions scored per minute over the last 5 minutes", ()),
    "average_amount": ("mean amount (as sent, mixed currencies) of transactions scored in the last hour", ()),
    "daily_transactions": ("transactions scored since midnight UTC", ()),
    "fraud_detection_rate": ("share of the last hour's scored transactions flagged as fraud", ()),
    "average_fraud_score": ("mean fraud score of the last hour's scored transactions", ()),
    "pending_alerts": ("fraud alerts waiting for an analyst review", ()),
    "model_precision": ("precision of the stream's decisions on labelled rows of the last 7 days", ()),
    "model_recall": ("recall of the stream's decisions on labelled rows of the last 7 days", ()),
    "model_f1": ("F1 of the stream's decisions on labelled rows of the last 7 days", ()),
    "labelled_transactions": ("labelled transactions among those scored in the last 7 days", ()),
    "active_model_version": ("version number of the registry's Production model", ("model",)),
    "scoring_model_version": ("model version that scored the latest transaction", ()),
    "service_up": ("1 when the service is up, 0 when it is down or not started", ("service",)),
    "processing_latency_seconds": ("Kafka produce time to scoring over the last hour (p50, p95, max)", ("stat",)),
    "drift_share": ("share of drifted feature columns in the latest drift check of the last 7 days", ()),
    "dataset_drift": ("1 when the latest drift check of the last 7 days found dataset drift, else 0", ()),
}


@dataclass(frozen=True)
class CollectorWindows:
    """The periods behind the metrics (see the module docstring)."""

    rate: timedelta = timedelta(minutes=5)
    summary: timedelta = timedelta(hours=1)
    performance: timedelta = timedelta(days=7)
    drift: timedelta = timedelta(days=7)


def _row(name: str, value, **labels) -> MetricRow:
    if name not in METRICS:
        raise KeyError(f"metric {name!r} is not in METRICS")
    return MetricRow(name, finite_or_none(value), labels)


def _version_number(version) -> float | None:
    text = str(version) if version is not None else ""
    return float(text) if text.isdigit() else None


# --- collection ---------------------------------------------------------------------------------
def collect_traffic(conn, windows: CollectorWindows = CollectorWindows()) -> list[MetricRow]:
    """Rate, daily count, mean amount, detection rate, mean score, pending alerts, latency."""
    from monitoring import queries

    per_minute = queries.traffic_summary(conn, windows.rate)["transactions"] / (windows.rate.total_seconds() / 60)
    recent = queries.traffic_summary(conn, windows.summary)
    latency = queries.processing_latency(conn, windows.summary)
    rate = recent["flagged"] / recent["transactions"] if recent["transactions"] else None
    return [
        _row("transactions_per_minute", per_minute),
        _row("average_amount", recent["average_amount"]),
        _row("daily_transactions", queries.transactions_today(conn)),
        _row("fraud_detection_rate", rate),
        _row("average_fraud_score", recent["average_fraud_score"]),
        _row("pending_alerts", queries.pending_alert_count(conn)),
        _row("scoring_model_version", _version_number(queries.latest_scoring_version(conn))),
        *[_row("processing_latency_seconds", latency[stat], stat=stat) for stat in ("p50", "p95", "max")],
    ]


def collect_model_performance(conn, windows: CollectorWindows = CollectorWindows()) -> list[MetricRow]:
    """Precision, recall, F1 and the number of labelled rows (decisions vs latest labels)."""
    from monitoring.performance import decision_performance
    from monitoring.queries import labelled_decisions

    rows = labelled_decisions(conn, windows.performance)
    perf = decision_performance(rows["decision"].tolist(), rows["label"].tolist()) if not rows.empty else \
        decision_performance([], [])
    return [_row("model_precision", perf["precision"]), _row("model_recall", perf["recall"]),
            _row("model_f1", perf["f1"]), _row("labelled_transactions", perf["labelled_rows"])]


def collect_drift(conn, windows: CollectorWindows = CollectorWindows()) -> list[MetricRow]:
    """The latest drift check's drift share and verdict (pipelines.drift's monitoring_metrics rows
    of source ``drift``); None when no check ran within ``windows.drift``."""
    from monitoring.queries import latest_metric

    return [_row(name, latest_metric(conn, "drift", name, windows.drift).get("metric_value"))
            for name in ("drift_share", "dataset_drift")]


def collect_model_version(settings) -> list[MetricRow]:
    """The registry's Production version of settings.model_name (None when there is none)."""
    from fraudops.modeling.registry import production_version, registry_client

    version = production_version(settings.model_name, registry_client(settings))
    return [_row("active_model_version", _version_number(version.version if version else None),
                 model=settings.model_name)]


def collect_service_status(settings, checks: dict[str, Callable] | None = None) -> list[MetricRow]:
    """service_up per service: 1 when running, 0 when down, not started, or its check failed."""
    from monitoring.services import service_states

    return [_row("service_up", float(state.running), service=state.name) for state in service_states(settings, checks)]


def collect(settings, pg_schema: str = "public", windows: CollectorWindows = CollectorWindows(),
            checks: dict[str, Callable] | None = None) -> list[MetricRow]:
    """One collection of every metric; a failing group is logged and left out (never raises)."""
    rows = collect_service_status(settings, checks)
    groups: list[tuple[str, Callable[[], list[MetricRow]]]] = [("registry", lambda: collect_model_version(settings))]
    try:
        conn = connect_schema(settings, pg_schema)
    except (ConnectionError, ValueError) as exc:
        log.error("no database metrics: %s", exc)
        conn = None
    if conn is not None:
        groups += [("traffic", lambda: collect_traffic(conn, windows)),
                   ("performance", lambda: collect_model_performance(conn, windows)),
                   ("drift", lambda: collect_drift(conn, windows))]
    try:
        for name, group in groups:
            try:
                rows += group()
            except Exception as exc:  # noqa: BLE001 - one failing source must not stop the others
                log.error("could not collect %s metrics: %s", name, exc)
                if conn is not None:
                    conn.rollback()
    finally:
        if conn is not None:
            conn.close()
    return rows


def store(settings, pg_schema: str, rows: Sequence[MetricRow]) -> int:
    """Insert the rows into monitoring_metrics (source 'collector'); one transaction."""
    conn = connect_schema(settings, pg_schema)
    try:
        count = insert_metric_rows(conn, SOURCE, rows)
        conn.commit()
        return count
    finally:
        conn.close()


# --- Prometheus ---------------------------------------------------------------------------------
class PrometheusExporter:
    """Gauges of :data:`METRICS` in their own registry; :meth:`update` sets them from MetricRows."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        self.gauges = {name: Gauge(PROMETHEUS_PREFIX + name, text, labelnames=labels, registry=self.registry)
                       for name, (text, labels) in METRICS.items()}

    def update(self, rows: Sequence[MetricRow]) -> None:
        """Set each gauge (NaN for an undefined value)."""
        for row in rows:
            gauge = self.gauges[row.name]
            target = gauge.labels(**{k: str(v) for k, v in row.labels.items()}) if row.labels else gauge
            target.set(math.nan if row.value is None else row.value)

    def serve(self, port: int = DEFAULT_PORT, addr: str = LOOPBACK):
        """Serve /metrics on ``addr:port`` in a daemon thread; returns the server (``server_port``, ``shutdown()``)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


# --- the loop -----------------------------------------------------------------------------------
def collect_and_publish(settings, pg_schema: str, exporter: PrometheusExporter | None,
                        windows: CollectorWindows = CollectorWindows()) -> list[MetricRow]:
    """Collect once, store the rows and update the gauges; storing errors are logged."""
    rows = collect(settings, pg_schema, windows)
    try:
        store(settings, pg_schema, rows)
    except Exception as exc:  # noqa: BLE001 - keep serving the gauges when PostgreSQL is down
        log.error("could not store metrics: %s", exc)
    if exporter is not None:
        exporter.update(rows)
    return rows


def run(settings, pg_schema: str, interval: float, port: int, stop: threading.Event, host: str = LOOPBACK) -> None:
    """Serve the gauges and collect every ``interval`` seconds until ``stop`` is set."""
    exporter = PrometheusExporter()
    server = exporter.serve(port, host)
    log.info("serving http://%s:%d/metrics, collecting every %.0fs", host, server.server_port, interval)
    try:
        while not stop.is_set():
            rows = collect_and_publish(settings, pg_schema, exporter)
            log.info("collected %d metrics", len(rows))
            stop.wait(interval)
    finally:
        server.shutdown()
        server.server_close()


def format_rows(rows: Sequence[MetricRow]) -> str:
    """One line per metric: name{labels} value."""
    def label_text(row):
        return "{" + ",".join(f"{k}={v}" for k, v in row.labels.items()) + "}" if row.labels else ""
    return "\n".join(f"{r.name}{label_text(r)} {'n/a' if r.value is None else f'{r.value:g}'}" for r in rows)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m monitoring.metrics_collector``."""
    from fraudops.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m monitoring.metrics_collector", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--interval", type=float, default=60.0, help="seconds between collections")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="Prometheus port (0: any free port)")
    p.add_argument("--host", default=LOOPBACK, help="address to bind; keep the loopback default outside containers")
    p.add_argument("--pg-schema", default="public", help="PostgreSQL schema read and written")
    p.add_argument("--once", action="store_true", help="collect and store once, print, exit (no server)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from fraudops.logs import configure_logging
    from fraudops.settings import load_settings

    args = build_parser().parse_args(argv)
    if args.interval <= 0:
        print(f"error: --interval={args.interval} must be > 0", file=sys.stderr)
        return 2
    settings = load_settings()
    configure_logging(settings.log_format)
    try:
        connect_schema(settings, args.pg_schema).close()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        if args.once:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        log.error("%s; collecting the other metrics meanwhile", exc)
    if args.once:
        print(format_rows(collect_and_publish(settings, args.pg_schema, None)))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(settings, args.pg_schema, args.interval, args.port, stop, args.host)
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
