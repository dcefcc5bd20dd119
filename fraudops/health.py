"""Health of the local stack: one line per service with its state and address.

Reads: the settings (env file written by `make stack-up`), the services themselves, and the
streaming job's last micro-batch metrics in PostgreSQL (monitoring_metrics).
Command: ``python -m fraudops.health`` (``make health``); exits non-zero when a service is down,
naming it and how to start it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from fraudops.settings import Settings, load_settings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    address: str
    detail: str
    how_to_start: str = "make stack-up"

    def line(self) -> str:
        state = "UP  " if self.up else "DOWN"
        text = f"{self.name:10s} {state} {self.address:28s} {self.detail}"
        return text if self.up else f"{text}  -> start it with `{self.how_to_start}`"


def check_kafka(settings: Settings) -> ServiceStatus:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": settings.kafka_brokers, "socket.timeout.ms": 3000})
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
    from fraudops.redis_client import connect_redis

    address = f"{settings.redis_host}:{settings.redis_port}"
    try:
        client = connect_redis(settings, timeout=2)
        try:
            info = client.info("server")
        finally:
            client.close()
        return ServiceStatus("redis", True, address, f"redis {info.get('redis_version')}")
    except Exception as exc:  # noqa: BLE001
        return ServiceStatus("redis", False, address, _short(exc))


def check_mlflow(settings: Settings) -> ServiceStatus:
    import urllib.request

    uri = settings.mlflow_tracking_uri
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3) as resp:  # noqa: S310
            ok = resp.status == 200
        return ServiceStatus("mlflow", ok, uri, "healthy" if ok else f"HTTP {resp.status}")
    except Exception as exc:  # noqa: BLE001
        return ServiceStatus("mlflow", False, uri, _short(exc))


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


SERVICE_CHECKS: dict[str, Callable[[Settings], ServiceStatus]] = {
    "kafka": check_kafka,
    "postgres": check_postgres,
    "redis": check_redis,
    "mlflow": check_mlflow,
}


def check_all(settings: Settings | None = None) -> list[ServiceStatus]:
    settings = settings or load_settings()
    return [check(settings) for check in SERVICE_CHECKS.values()]


def main() -> int:
    statuses = check_all()
    for status in statuses:
        print(status.line())
    down = [s.name for s in statuses if not s.up]
    if down:
        print(f"down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
