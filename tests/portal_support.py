"""Helpers of the portal's tests: a portal process on its own schema and port, users created
with the real CLI (password on stdin), logins and form tokens."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.polling import assert_eventually

ROOT = Path(__file__).resolve().parents[1]
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
STATE_FIELD = re.compile(r'name="state" value="([^"]+)"')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PortalProcess:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_portal(schema: str, log_path: Path, env: dict[str, str] | None = None) -> PortalProcess:
    """`python -m portal serve` on a free loopback port for ``schema``; returns once /healthz answers."""
    port = free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [sys.executable, "-m", "portal", "serve", "--port", str(port), "--pg-schema", schema],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    portal = PortalProcess(process, f"http://127.0.0.1:{port}", log_path)

    def healthy():
        assert process.poll() is None, f"portal exited: {portal.log()}"
        return httpx.get(portal.base_url + "/healthz", timeout=2).status_code == 200

    try:
        assert_eventually(healthy, timeout=60, interval=0.3, message=f"portal on {portal.base_url} (log {log_path})")
    except BaseException:
        portal.stop()
        raise
    return portal


def add_user(schema: str, name: str, role: str, password: str) -> subprocess.CompletedProcess:
    """`python -m portal add-user` with the password on stdin (as the README shows)."""
    return subprocess.run([sys.executable, "-m", "portal", "add-user", name, "--role", role, "--pg-schema", schema],
                          cwd=ROOT, input=password + "\n", capture_output=True, text=True, timeout=60)


def csrf_token(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no csrf_token field in the page"
    return match.group(1)


def review_state(html: str) -> str:
    match = STATE_FIELD.search(html)
    assert match, "no review form in the page"
    return match.group(1)


def login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    """Fetch the login form (its CSRF cookie and token) and post the credentials."""
    form = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(form.text),
                                       "next": "/alerts"})


def insert_alert(conn, schema: str, transaction_id: str, *, score: float = 0.9, country: str = "US",
                 user_id: str = "USER_P1", model_version: str = "1", amount: float = 120.0,
                 detection_offset_seconds: float = 0.0, decision: str | None = None,
                 decline_threshold: float | None = None, degraded_reason: str | None = None) -> None:
    """A scored transaction and its alert, as the scoring job writes them (commits).

    ``decision`` None: the stream alone scored it (decision columns NULL); otherwise decided by the
    decision service (decided now, at ``decline_threshold``; degraded when ``degraded_reason`` is given).
    """
    decided = decision is not None
    with conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
        cur.execute(
            "INSERT INTO transactions (transaction_id, user_id, amount, currency, merchant, transaction_time, country, "
            "transaction_type, fraud_score, is_fraud, decision_threshold, model_version, scored_at, produced_at, "
            "decision, decline_threshold, decided_at, decision_degraded, degraded_reason) "
            "VALUES (%s, %s, %s, 'USD', 'Shop', now(), %s, 'purchase', %s, TRUE, 0.5, %s, now(), now(), "
            "%s, %s, CASE WHEN %s THEN now() END, %s, %s)",
            (transaction_id, user_id, amount, country, score, model_version, decision, decline_threshold, decided,
             (degraded_reason is not None) if decided else None, degraded_reason))
        cur.execute(
            "INSERT INTO fraud_alerts (transaction_id, user_id, amount, currency, merchant, country, transaction_time, "
            "fraud_score, model_version, detection_time, decision) VALUES (%s, %s, %s, 'USD', 'Shop', %s, now(), %s, "
            "%s, now() + %s * interval '1 second', %s)",
            (transaction_id, user_id, amount, country, score, model_version, detection_offset_seconds, decision))
        cur.execute("SET search_path TO public")
    conn.commit()
