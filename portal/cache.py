"""A tiny time-based cache shared by the portal's requests (no I/O of its own).

The dashboard's numbers are computed at most once per ``ttl`` whatever the number of open
dashboards; the queue's filter suggestions once a minute. Concurrent misses compute once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class TTLCache:
    def __init__(self):
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, ttl: float, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key`` if younger than ``ttl`` seconds, else ``compute()`` (stored)."""
        hit = self._values.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)
            if hit is not None and time.monotonic() - hit[0] < ttl:
                return hit[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value
