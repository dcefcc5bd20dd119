"""PostgreSQL connections of the portal: a small blocking pool, every connection on one schema.

Reads/writes nothing by itself; portal.queries, portal.auth, portal.users and portal.reviews
run their SQL on the connections it lends.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fraudops.db import connect

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_schema_name(schema: str) -> str:
    """``schema`` when it is a plain identifier; ValueError naming pg_schema otherwise."""
    if not SCHEMA_NAME.match(schema or ""):
        raise ValueError(f"pg_schema={schema!r} is not a plain schema name")
    return schema


def connect_on_schema(settings, schema: str):
    """A psycopg2 connection whose search_path is ``schema`` (ConnectionError when PostgreSQL is down)."""
    conn = connect(settings)
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (check_schema_name(schema),))
    conn.commit()
    return conn


class ConnectionPool:
    """At most ``size`` connections; a borrower waits for a free one (``timeout`` seconds) instead of failing."""

    def __init__(self, settings, schema: str, size: int = 8, timeout: float = 10.0):
        self.settings, self.schema, self.timeout = settings, check_schema_name(schema), timeout
        self._free: list = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator:
        """A connection for one unit of work; rolled back (or committed by the caller) and returned."""
        if not self._slots.acquire(timeout=self.timeout):
            raise TimeoutError("no free PostgreSQL connection in the portal's pool")
        conn = None
        try:
            with self._lock:
                conn = self._free.pop() if self._free else None
            if conn is None or conn.closed:
                conn = connect_on_schema(self.settings, self.schema)
            yield conn
            conn.rollback()
        except BaseException:
            if conn is not None and not conn.closed:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - a broken connection is dropped below
                    conn.close()
            raise
        finally:
            if conn is not None and not conn.closed:
                with self._lock:
                    self._free.append(conn)
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            for conn in self._free:
                conn.close()
            self._free.clear()
