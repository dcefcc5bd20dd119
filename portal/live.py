"""The live alert queue: new fraud_alerts pushed to the open queue pages (server-sent events).

Reads: PostgreSQL notifications on channel ``fraud_alerts_inserted`` (sent at COMMIT by the
trigger of migration 0003 with the schema and the alert_id range of each INSERT), then those
rows of ``<pg-schema>``.fraud_alerts. One listener thread serves every subscriber; each open
page gets the new rows that match its filters, typically well under a second after the commit.
After a lost connection the listener reconnects and catches up from the last alert_id it saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal import queries
from portal.db import connect_on_schema
from portal.filters import AlertFilters

log = logging.getLogger("portal.live")
CHANNEL = "fraud_alerts_inserted"
SUBSCRIBER_BACKLOG = 500


@dataclass(eq=False)
class Subscriber:
    filters: AlertFilters
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_BACKLOG))
    overflowed: bool = False

    def offer(self, item: str) -> None:
        """Called on the event loop: queue the event, or mark the subscriber as too slow."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True


class LiveAlerts:
    """LISTEN for new alerts of one schema and fan them out to subscribers.

    Args:
        settings: connection settings.
        schema: the portal's schema (notifications of other schemas are ignored).
        render: turns a queue row into the event's text (the app renders the row's HTML).
    """

    def __init__(self, settings, schema: str, render: Callable[[dict[str, Any]], str]):
        self.settings, self.schema, self.render = settings, schema, render
        self.subscribers: set[Subscriber] = set()
        self.last_alert_id: int | None = None
        self._seen: deque[int] = deque(maxlen=5000)
        self._seen_set: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    # --- subscribers (event loop side) -------------------------------------------------------
    def subscribe(self, filters: AlertFilters) -> Subscriber:
        subscriber = Subscriber(filters, asyncio.get_running_loop())
        with self._lock:
            self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self.subscribers.discard(subscriber)

    # --- the listener thread -----------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="portal-live-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - reconnect after any failure
                self.connected.clear()
                log.warning("live alerts: %s; reconnecting in 1 s", str(exc).strip()[:200])
                self._stop.wait(1.0)

    def _listen(self) -> None:
        conn = connect_on_schema(self.settings, self.schema)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("LISTEN fraud_alerts_inserted")  # CHANNEL
            if self.last_alert_id is None:
                self.last_alert_id = queries.newest_alert_id(conn)
            else:  # catch up on what was committed while the connection was down
                self.publish(queries.alerts_after(conn, self.last_alert_id))
            self.connected.set()
            while not self._stop.is_set():
                if select.select([conn], [], [], 1.0)[0]:
                    conn.poll()
                    ranges = [self._range(n.payload) for n in conn.notifies]
                    conn.notifies.clear()
                    for low, high in filter(None, ranges):
                        self.publish(queries.alerts_in_id_range(conn, low, high))
        finally:
            conn.close()

    def _range(self, payload: str) -> tuple[int, int] | None:
        try:
            message = json.loads(payload)
            if message.get("schema") != self.schema:
                return None
            return int(message["min"]), int(message["max"])
        except (ValueError, KeyError, TypeError):
            log.warning("live alerts: unexpected notification %r", payload[:200])
            return None

    def publish(self, rows: list[dict[str, Any]]) -> int:
        """Send each row not sent before to the subscribers whose filters it matches; returns rows sent."""
        fresh = [r for r in rows if r["alert_id"] not in self._seen_set]
        for row in fresh:
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(row["alert_id"])
            self._seen_set.add(row["alert_id"])
            self.last_alert_id = max(self.last_alert_id or 0, row["alert_id"])
        with self._lock:
            subscribers = list(self.subscribers)
        for row in fresh:
            event = None
            for subscriber in subscribers:
                if subscriber.filters.matches(row):
                    event = event or self.render(row)
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, event)
        return len(fresh)
