"""Readiness checks of the platform's services, one per service: Kafka, PostgreSQL, Redis, MLflow
and the streaming job (state and address, or what is down and how to start it).

Reads: the settings, the services themselves, and the streaming job's last micro-batch metrics
in PostgreSQL (monitoring_metrics). The one readiness check of each service: `make health`
(devstack.health), the local stack's start-up waits (devstack), the containers' health checks,
the monitoring collector and the portal all call these.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from fraudops.settings import Settings, load_settings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    address: str
    detail: str
    how_to_start: str = "make stack-up"
    state: str | None = None  # shown instead of UP/DOWN (e.g. OFF: optional and not started)

    def line(self) -> str:
        state = self.state or ("UP  " if self.up else "DOWN")
        text = f"{self.name:13s} {state} {self.address:28s} {self.detail}"
        return text if self.up else f"{text}  -> start it with `{self.how_to_start}`"


def check_kafka(settings: Settings) -> ServiceStatus:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": settings.kafka_brokers, "socket.timeout.ms": 3000,
                             "log_level": 2})  # connection failures go into the status, not to stderr
        meta = admin.list_topics(timeout=3)
        topics = [t for t in meta.topics if not t.startswith("__")]
        return ServiceStatus("kafka", True, settings.kafka_brokers,
                             f"{len(meta.brokers)} broker(s), {len(topics)} topic(s)")
    except Exception as exc:  # noqa: BLE001
        return ServiceStatus("kafka", False, settings.kafka_brokers, _short(exc))


def check_postgres(settings: Settings) -> ServiceStatus:
    from fraudops.db import connect

    address = f"{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"
    try:
        conn = connect(settings, timeout=3)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM schema_migrations")
                migrations = cur.fetchone()[0]
        finally:
            conn.close()
        return ServiceStatus("postgres", True, address, f"{migrations} migration(s) applied")
    except Exception as exc:  # noqa: BLE001
        return ServiceStatus("postgres", False, address, _short(exc))


def check_redis(settings: Settings) -> ServiceStatus:
    """The alert cache."""
    return _redis_status("redis", settings.redis_host, settings.redis_port, settings.redis_password)


def check_feature_store(settings: Settings) -> ServiceStatus:
    """The online feature store (a Redis instance of its own)."""
    return _redis_status("feature-store", settings.feature_store_host, settings.feature_store_port,
                         settings.feature_store_password)


def _redis_status(name: str, host: str, port: int, password: str) -> ServiceStatus:
    import redis

    address = f"{host}:{port}"
    client = redis.Redis(host=host, port=port, password=password or None, socket_timeout=2,
                         socket_connect_timeout=2, decode_responses=True)
    try:
        info = client.info("server")
        return ServiceStatus(name, True, address, f"redis {info.get('redis_version')}")
    except Exception as exc:  # noqa: BLE001 - any failure means down; the detail says which
        return ServiceStatus(name, False, address, _short(exc))
    finally:
        client.close()


def check_mlflow(settings: Settings) -> ServiceStatus:
    import urllib.request

    uri = settings.mlflow_tracking_uri
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3) as resp:  # noqa: S310
            ok = resp.status == 200
        return ServiceStatus("mlflow", ok, uri, "healthy" if ok else f"HTTP {resp.status}")
    except Exception as exc:  # noqa: BLE001
        return ServiceStatus("mlflow", False, uri, _short(exc))


def check_streaming_job(settings: Settings) -> ServiceStatus:
    """The scoring job: its process (PID file of `make stream-bg`) and its last micro-batch.

    A job that was never started is reported but is not a failure; one whose PID file remains
    while its process is gone has crashed and is reported DOWN.
    """
    pid_file = settings.state_dir / "pids" / "streaming.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.is_file() else None
    alive = pid is not None and _process_exists(pid)
    last = _last_scoring_batch(settings)
    detail = f"last batch {last}" if last else "no batch recorded yet"
    if pid is None:
        return ServiceStatus("streaming", True, "spark-submit", f"not started ({detail}); start: make stream-bg",
                             "make stream-bg", state="OFF ")
    return ServiceStatus("streaming", alive, f"pid {pid}", detail if alive else f"crashed ({detail})",
                         "make stream-bg")


def check_decision_service(settings: Settings) -> ServiceStatus:
    """The decision service (decisions/): its process (PID file of `make decisions-bg`) and its
    /health (model served, feature store reachable). Not started: reported, not a failure."""
    import json
    import urllib.error
    import urllib.request

    pid_file = settings.state_dir / "pids" / "decisions.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.is_file() else None
    address = f"http://127.0.0.1:{settings.decisions_port}"
    if pid is None:
        return ServiceStatus("decisions", True, address, "not started; start: make decisions-bg",
                             "make decisions-bg", state="OFF ")
    if not _process_exists(pid):
        return ServiceStatus("decisions", False, address, f"crashed (pid {pid} gone)", "make decisions-bg")
    try:
        with urllib.request.urlopen(f"{address}/health", timeout=3) as resp:  # noqa: S310 - loopback
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: up, but degraded
        body = json.loads(exc.read() or b"{}")
    except Exception as exc:  # noqa: BLE001
        return ServiceStatus("decisions", False, address, _short(exc), "make decisions-bg")
    ok = body.get("status") == "ok"
    detail = (f"model version {body.get('model_version')}, feature store {body.get('feature_store')}, "
              f"{body.get('decided', 0)} decided, {body.get('degraded', 0)} degraded")
    return ServiceStatus("decisions", ok, address, detail if ok else f"degraded: {detail}", "make decisions-bg")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_scoring_batch(settings: Settings) -> str | None:
    from fraudops.db import connect

    try:
        conn = connect(settings, timeout=3)
    except ConnectionError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT recorded_at, now() - recorded_at, metric_value, labels->>'model_version' "
                "FROM monitoring_metrics WHERE source = 'streaming' AND metric_name = 'scored_rows' "
                "ORDER BY recorded_at DESC LIMIT 1")
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return f"{row[1].total_seconds():.0f}s ago: {row[2]:.0f} rows, model version {row[3]}"


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


SERVICE_CHECKS: dict[str, Callable[[Settings], ServiceStatus]] = {
    "kafka": check_kafka,
    "postgres": check_postgres,
    "redis": check_redis,
    "feature-store": check_feature_store,
    "mlflow": check_mlflow,
}
OPTIONAL_CHECKS: dict[str, Callable[[Settings], ServiceStatus]] = {"streaming": check_streaming_job,
                                                                   "decisions": check_decision_service}


def check_all(settings: Settings | None = None) -> list[ServiceStatus]:
    settings = settings or load_settings()
    return [check(settings) for check in SERVICE_CHECKS.values()]


def build_parser():
    """The parser of ``python -m fraudops.health`` (console script ``fraudops-health``)."""
    import argparse

    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="fraudops-health", formatter_class=HelpFormatter,
        description="One line per service the settings name (Kafka, PostgreSQL, Redis, the feature store, "
                    "MLflow), with the streaming job and the decision service when asked; exit 1 naming "
                    "what is down. The application image's default command.")
    parser.add_argument("--service", action="append", choices=sorted({*SERVICE_CHECKS, *OPTIONAL_CHECKS}),
                        help="check only this service (repeatable; default: every stack service)")
    parser.add_argument("--jobs", action="store_true",
                        help="also the streaming job and the decision service (their PID files under "
                             "FRAUDOPS_STATE_DIR; not started is not a failure)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print each service's status line; 0 when all are up, 1 (naming them on stderr) otherwise."""
    import sys

    args = build_parser().parse_args(argv)
    checks = {**SERVICE_CHECKS, **(OPTIONAL_CHECKS if args.jobs else {})}
    if args.service:
        checks = {name: check for name, check in {**SERVICE_CHECKS, **OPTIONAL_CHECKS}.items()
                  if name in args.service}
    settings = load_settings()
    statuses = [check(settings) for check in checks.values()]
    for status in statuses:
        print(status.line())
    down = [s.name for s in statuses if not s.up]
    if down:
        print(f"down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
