"""Alert runner: evaluates monitoring.alert_rules every --interval seconds and delivers new firings.

Reads:  PostgreSQL ``<pg-schema>`` (fraud_alerts, transactions, labels, the drift checks'
        monitoring_metrics rows, audit_log for what already fired); the services (fraudops.health).
Writes: one audit_log row per firing (event_type ``alert_fired``, actor ``monitoring.alerts``,
        details: rule, key, severity, message, details, webhook outcome); a WARNING log line; a JSON
        POST to the webhook ALERT_WEBHOOK_URL (or --webhook-url) when set. A key that fired within
        its rule's cooldown is not fired again (checked in audit_log under an advisory lock, so
        restarts and parallel runners do not repeat it). With --retrain-on-drift, a drift firing
        starts ``python -m pipelines.retrain --if-drift true`` in the background (audit_log
        ``retrain_triggered``).

Run:
    python -m monitoring.alerts --interval 30
    python -m monitoring.alerts --once --high-value-amount 10000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring import alert_rules as rules
from monitoring.alert_rules import DEFAULT_RULE_SETTINGS, Firing, RuleSettings
from monitoring.storage import connect_schema, insert_audit

log = logging.getLogger("monitoring.alerts")

ACTOR = "monitoring.alerts"
FIRED_EVENT = "alert_fired"
RETRAIN_EVENT = "retrain_triggered"
WEBHOOK_ENV = "ALERT_WEBHOOK_URL"
WEBHOOK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class AlertInputs:
    """Everything the rules look at, read in one go."""

    alerts: pd.DataFrame
    recent_traffic: Mapping[str, Any]
    baseline_traffic: Mapping[str, Any]
    performance: Mapping[str, Any]
    latest_drift: Mapping[str, Any]
    services: Sequence[Any]


def read_inputs(conn, settings, rule_settings: RuleSettings, checks: Mapping[str, Callable] | None = None) -> AlertInputs:
    """Query the rules' inputs (database and service checks)."""
    from monitoring import queries
    from monitoring.performance import decision_performance
    from monitoring.services import service_states

    lookback = max(rule_settings.alert_lookback, rule_settings.rapid_window)
    recent = queries.traffic_summary(conn, rule_settings.spike_window)
    day = queries.traffic_summary(conn, timedelta(hours=24))
    baseline = {k: (day[k] or 0) - (recent[k] or 0) for k in ("transactions", "flagged")}
    labelled = queries.labelled_decisions(conn, rule_settings.performance_window)
    performance = decision_performance(labelled["decision"].tolist(), labelled["label"].tolist()) \
        if not labelled.empty else decision_performance([], [])
    drift = queries.latest_metric(conn, "drift", "dataset_drift", rule_settings.drift_max_age)
    conn.commit()
    return AlertInputs(queries.recent_alerts(conn, lookback), recent, baseline, performance, drift,
                       service_states(settings, checks))


def evaluate_rules(inputs: AlertInputs, rule_settings: RuleSettings) -> list[Firing]:
    """Every rule over the inputs (pure), in a fixed order."""
    return [
        *rules.service_down(inputs.services),
        *rules.high_value_fraud(inputs.alerts, rule_settings.high_value_amount),
        *rules.rapid_fraud_sequence(inputs.alerts, rule_settings.rapid_count, rule_settings.rapid_window),
        *rules.fraud_rate_spike(inputs.recent_traffic, inputs.baseline_traffic, rule_settings),
        *rules.model_degradation(inputs.performance, rule_settings),
        *rules.drift_detected(inputs.latest_drift),
    ]


def keys_in_cooldown(conn, firings: Sequence[Firing], rule_settings: RuleSettings) -> set[str]:
    """The keys among ``firings`` that already fired within their rule's cooldown (audit_log)."""
    if not firings:
        return set()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT details->>'key', now() - max(created_at) FROM audit_log "
            "WHERE event_type = %s AND details->>'key' = ANY(%s) GROUP BY 1",
            (FIRED_EVENT, [f.key for f in firings]),
        )
        since_last = dict(cur.fetchall())
    return {f.key for f in firings if f.key in since_last and since_last[f.key] < rule_settings.cooldown(f.rule)}


def post_webhook(url: str, payload: Mapping[str, Any]) -> str:
    """POST ``payload`` as JSON; returns the outcome ("HTTP 200" or "failed: ...") and never raises."""
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(),  # noqa: S310 - the operator's webhook URL
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            return f"HTTP {response.status}"
    except Exception as exc:  # noqa: BLE001 - a broken webhook must not stop the alerts
        log.error("webhook %s failed: %s", url, exc)
        return f"failed: {exc}"[:300]


def deliver(conn, firing: Firing, webhook_url: str | None) -> int:
    """Log the firing, POST it to the webhook (if any) and record it in audit_log; returns audit_id."""
    fired_at = datetime.now(UTC).isoformat()
    payload = {"rule": firing.rule, "key": firing.key, "severity": firing.severity, "message": firing.message,
               "details": dict(firing.details), "fired_at": fired_at}
    log.warning("ALERT [%s] %s: %s", firing.severity, firing.rule, firing.message)
    outcome = post_webhook(webhook_url, payload) if webhook_url else "not configured"
    return insert_audit(conn, FIRED_EVENT, ACTOR, {**payload, "webhook": outcome})


def fire_new(conn, firings: Sequence[Firing], rule_settings: RuleSettings, webhook_url: str | None) -> list[Firing]:
    """Deliver the firings not in cooldown, in one transaction under a per-schema advisory lock."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('monitoring.alerts:' || current_schema()))")
    unique = list({f.key: f for f in firings}.values())
    quiet = keys_in_cooldown(conn, unique, rule_settings)
    fired = [f for f in unique if f.key not in quiet]
    for firing in fired:
        deliver(conn, firing, webhook_url)
    conn.commit()
    return fired


def trigger_retrain(conn, settings, pg_schema: str, firing: Firing, log_dir: Path | None = None) -> subprocess.Popen:
    """Start ``python -m pipelines.retrain --if-drift true`` in the background; returns the process.

    Its output goes to ``<log_dir>/retrain-<UTC time>.log`` (default: the stack's logs folder).
    """
    logs = Path(log_dir) if log_dir is not None else Path(settings.state_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    with open(log_file, "ab") as out:
        process = subprocess.Popen(  # a fixed argv, no shell
            [sys.executable, "-m", "pipelines.retrain", "--pg-schema", pg_schema, "--if-drift", "true"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent))
    insert_audit(conn, RETRAIN_EVENT, ACTOR, {"key": firing.key, "pid": process.pid, "log": str(log_file)})
    conn.commit()
    log.warning("drift: retraining started (pid %d, log %s)", process.pid, log_file)
    return process


def run_once(settings, pg_schema: str = "public", rule_settings: RuleSettings = DEFAULT_RULE_SETTINGS,
             webhook_url: str | None = None, checks: Mapping[str, Callable] | None = None,
             retrain_on_drift: bool = False, started: list | None = None,
             retrain_log_dir: Path | None = None) -> list[Firing]:
    """Evaluate every rule once and deliver what is new; returns the firings delivered now.

    With ``retrain_on_drift``, a drift firing starts a retrain; its process is appended to ``started``.
    """
    conn = connect_schema(settings, pg_schema)
    try:
        inputs = read_inputs(conn, settings, rule_settings, checks)
        fired = fire_new(conn, evaluate_rules(inputs, rule_settings), rule_settings, webhook_url)
        if retrain_on_drift:
            for firing in (f for f in fired if f.rule == "drift_detected"):
                process = trigger_retrain(conn, settings, pg_schema, firing, retrain_log_dir)
                if started is not None:
                    started.append(process)
        return fired
    finally:
        conn.close()


def run(settings, pg_schema: str, interval: float, stop: threading.Event, **kwargs) -> None:
    """:func:`run_once` every ``interval`` seconds until ``stop`` is set; errors are logged, not fatal."""
    while not stop.is_set():
        try:
            fired = run_once(settings, pg_schema, **kwargs)
            log.info("%d new alert(s)", len(fired))
        except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL down: try again next interval
            log.error("alert evaluation failed: %s", exc)
        stop.wait(interval)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m monitoring.alerts``."""
    from fraudops.cli import HelpFormatter

    defaults = DEFAULT_RULE_SETTINGS
    p = argparse.ArgumentParser(prog="python -m monitoring.alerts", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--interval", type=float, default=30.0, help="seconds between evaluations")
    p.add_argument("--once", action="store_true", help="evaluate once, print what fired, exit")
    p.add_argument("--pg-schema", default="public", help="PostgreSQL schema of the tables read and audit_log")
    p.add_argument("--webhook-url", default=None, help=f"where alerts are also posted (default: ${WEBHOOK_ENV}; unset: no webhook)")
    p.add_argument("--high-value-amount", type=float, default=defaults.high_value_amount,
                   help="high_value_fraud: an alert of at least this amount")
    p.add_argument("--spike-factor", type=float, default=defaults.spike_factor,
                   help="fraud_rate_spike: the recent flagged share is this many times the rest of the day's")
    p.add_argument("--spike-min-rate", type=float, default=defaults.spike_min_rate,
                   help="fraud_rate_spike: and at least this flagged share")
    p.add_argument("--rapid-count", type=int, default=defaults.rapid_count,
                   help="rapid_fraud_sequence: this many alerts of one user within the rule's window")
    p.add_argument("--min-precision", type=float, default=defaults.min_precision,
                   help="model_degradation: precision on labelled rows below this")
    p.add_argument("--min-recall", type=float, default=defaults.min_recall,
                   help="model_degradation: recall on labelled rows below this")
    p.add_argument("--retrain-on-drift", action="store_true", help="start pipelines.retrain when drift fires")
    return p


def rule_settings_from(args: argparse.Namespace) -> RuleSettings:
    """RuleSettings from the CLI; ValueError naming a flag out of range."""
    for flag in ("high_value_amount", "spike_factor", "rapid_count", "interval"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be > 0")
    for flag in ("spike_min_rate", "min_precision", "min_recall"):
        if not 0 <= getattr(args, flag) <= 1:
            raise ValueError(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be in [0, 1]")
    return RuleSettings(high_value_amount=args.high_value_amount, spike_factor=args.spike_factor,
                        spike_min_rate=args.spike_min_rate, rapid_count=args.rapid_count,
                        min_precision=args.min_precision, min_recall=args.min_recall)


def main(argv: Sequence[str] | None = None) -> int:
    from fraudops.logs import configure_logging
    from fraudops.settings import load_settings

    args = build_parser().parse_args(argv)
    try:
        rule_settings = rule_settings_from(args)
        settings = load_settings()
        configure_logging(settings.log_format)
        connect_schema(settings, args.pg_schema).close()
    except (ValueError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = {"rule_settings": rule_settings, "webhook_url": args.webhook_url or os.environ.get(WEBHOOK_ENV) or None,
               "retrain_on_drift": args.retrain_on_drift}
    if args.once:
        for firing in run_once(settings, args.pg_schema, **options):
            print(f"[{firing.severity}] {firing.rule}: {firing.message}")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(settings, args.pg_schema, args.interval, stop, **options)
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
