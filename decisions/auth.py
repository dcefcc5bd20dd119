"""Callers of the decision API: API keys stored hashed in PostgreSQL, a rate limit per client.

A key is 32 random bytes (urlsafe base64, prefixed ``fdk_``), shown once by
``python -m decisions keys create --client NAME``; PostgreSQL keeps only its SHA-256
(table decision_clients). A key of 256 random bits needs no slow password hash: nobody can
guess one, and a stolen table gives no key. The service reads the active keys at start and
every REFRESH_SECONDS (a revoked key stops working within that time), so no request waits on
PostgreSQL. Each client has a token bucket of ``rate_limit_per_s`` requests a second (burst:
one second's worth); over it the request is refused with 429.

Refused requests (no key, unknown key, over the rate, too large) are logged and written to
audit_log (event ``decision_request_refused``) by a background thread.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("decisions.auth")
KEY_PREFIX = "fdk_"
REFRESH_SECONDS = 30.0
REFUSED_EVENT = "decision_request_refused"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_client(conn, client: str, rate_limit_per_s: float = 2000.0) -> str:
    """A new key for ``client`` (replaces its previous key); returns the key (shown once)."""
    if not client or len(client) > 64:
        raise ValueError("--client must be 1 to 64 characters")
    if not rate_limit_per_s > 0:
        raise ValueError(f"--rate-limit must be > 0 (got {rate_limit_per_s})")
    key = new_key()
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO decision_clients (client_name, key_hash, rate_limit_per_s) VALUES (%s, %s, %s) "
            "ON CONFLICT (client_name) DO UPDATE SET key_hash = EXCLUDED.key_hash, "
            "rate_limit_per_s = EXCLUDED.rate_limit_per_s, created_at = now(), revoked_at = NULL",
            (client, key_hash(key), rate_limit_per_s))
    conn.commit()
    return key


def revoke_client(conn, client: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("UPDATE decision_clients SET revoked_at = now() WHERE client_name = %s AND revoked_at IS NULL",
                    (client,))
        done = cur.rowcount > 0
    conn.commit()
    return done


@dataclass
class Client:
    name: str
    rate_limit_per_s: float
    tokens: float
    refilled: float

    def allow(self, now: float) -> bool:
        self.tokens = min(self.rate_limit_per_s, self.tokens + (now - self.refilled) * self.rate_limit_per_s)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ClientRegistry:
    """The active keys (by hash), refreshed from PostgreSQL in the background."""

    def __init__(self, connect):
        self._connect = connect
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.loaded_at: float | None = None

    def load(self) -> int:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT key_hash, client_name, rate_limit_per_s FROM decision_clients "
                            "WHERE revoked_at IS NULL")
                rows = cur.fetchall()
        finally:
            conn.close()
        now = time.monotonic()
        with self._lock:
            old = self._clients
            self._clients = {h: old[h] if h in old and old[h].rate_limit_per_s == rate
                             else Client(name, rate, rate, now) for h, name, rate in rows}
        self.loaded_at = time.time()
        return len(rows)

    def start(self) -> ClientRegistry:
        self.load()
        threading.Thread(target=self._loop, name="decision-clients", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                self.load()
            except Exception as exc:  # noqa: BLE001 - keep the keys we have; retry
                log.warning("decision clients not refreshed (%s)", exc)

    def client_of(self, key: str | None) -> Client | None:
        if not key:
            return None
        return self._clients.get(key_hash(key))


class RefusalLog:
    """Refused requests to the log and to audit_log, written off the request path."""

    def __init__(self, connect):
        self._connect = connect
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        threading.Thread(target=self._run, name="decision-refusals", daemon=True).start()
        self.dropped = 0

    def refused(self, reason: str, client: str | None, remote: str | None, path: str) -> None:
        log.warning("refused %s from %s (client %s): %s", path, remote, client, reason)
        try:
            self._queue.put_nowait({"reason": reason, "client": client, "remote": remote, "path": path})
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        from fraudops.records import insert_audit

        conn = None
        while True:
            details = self._queue.get()
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                insert_audit(conn, REFUSED_EVENT, "decision-service", details)
                conn.commit()
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: the log line stays
                log.warning("refusal not written to audit_log (%s)", exc)
                conn = None
            finally:
                self._queue.task_done()
