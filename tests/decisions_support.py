"""Helpers for the decision service's tests: the real service as a subprocess (its own port,
PostgreSQL schema, feature-store prefix and decisions topic), an API key, requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.polling import assert_eventually
from tests.reliability.reliability_support import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningService:
    url: str
    key: str
    proc: subprocess.Popen
    log_path: Path

    def post(self, body, key: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key if key is None else key}"} if key != "" else {}
        if isinstance(body, bytes | str):
            return httpx.post(f"{self.url}/v1/decisions", content=body, headers=headers, timeout=30, **kwargs)
        return httpx.post(f"{self.url}/v1/decisions", json=body, headers=headers, timeout=30, **kwargs)

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/health", timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def private_space(settings, letter: str = "d"):
    """A PostgreSQL schema (migrated), a feature-store prefix and a decisions topic of one test
    module; the schema is dropped after."""
    import uuid

    from confluent_kafka.admin import AdminClient, NewTopic

    from fraudops.db import apply_migrations, connect

    tag = f"{letter}{uuid.uuid4().hex[:10]}"
    conn = connect(settings)
    schema = f"s_{tag}"
    apply_migrations(conn, schema)
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    for future in admin.create_topics([NewTopic(f"decisions-{tag}", 2, 1)]).values():
        future.result(timeout=30)
    try:
        yield {"schema": schema, "prefix": f"{tag}:", "topic": f"decisions-{tag}", "tag": tag}
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.commit()
        conn.close()


def schema_connection(settings, schema: str):
    """A PostgreSQL connection whose search_path is ``schema``."""
    from fraudops.db import connect

    conn = connect(settings)
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
    conn.commit()
    return conn


def create_key(settings, schema: str, client: str, rate_limit: float = 100_000.0) -> str:
    from decisions.auth import create_client
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
        return create_client(conn, client, rate_limit)
    finally:
        conn.close()


def start_service(schema: str, prefix: str, topic: str, model_uri: str, log_path: Path,
                  env: dict[str, str] | None = None, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [sys.executable, "-m", "decisions", "serve", "--port", str(port), "--pg-schema", schema,
            "--redis-prefix", prefix, "--topic", topic, "--model-uri", model_uri, "--timeout-ms", "2000",
            "--model-refresh-seconds", "1", "--merchant-refresh-seconds", "3600", *extra]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                env={**os.environ, **(env or {})}, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


@contextmanager
def decision_service(settings, schema: str, prefix: str, topic: str, model_uri: str, log_path: Path,
                     env: dict[str, str] | None = None, ready: bool = True, extra: tuple[str, ...] = ()):
    """The real service on a free port; ``ready``: wait until /health says ok (model loaded)."""
    key = create_key(settings, schema, f"tests-{prefix}")
    proc, url = start_service(schema, prefix, topic, model_uri, log_path, env, *extra)
    service = RunningService(url, key, proc, log_path)
    try:
        wait_ready(service, ok=ready)
        yield service
    finally:
        stop(proc)


def wait_ready(service: RunningService, ok: bool = True, timeout: float = 180.0) -> None:
    def up():
        assert service.proc.poll() is None, f"the decision service exited:\n{service.log()}"
        response = service.health()
        return response.status_code == 200 if ok else response.status_code in (200, 503)

    assert_eventually(up, timeout=timeout, interval=0.3, message=f"decision service ready ({service.log_path})")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def transaction(i: int, user: str = "USER_1", **changes) -> dict:
    body = {"transaction_id": f"TXN_D{time.time_ns()}_{i}", "user_id": user, "amount": 25.0 + i,
            "currency": "USD", "merchant": "Grocer", "merchant_id": "M_1", "transaction_time":
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "country": "US", "transaction_type": "purchase"}
    body.update(changes)
    return body
