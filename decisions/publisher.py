"""Decided transactions to Kafka (KAFKA_DECISIONS_TOPIC, key = user_id), acknowledged or retried.

A decided message is first written to the unpublished set (decisions.records, in the same
round trip as its decision record), then produced; its delivery report removes it from the set.
A background thread serves the producer's delivery reports, at start produces again every
message an earlier run left unacknowledged, and, every REPUBLISH_SECONDS,
produces again what is still unpublished after that long (Kafka down, or a service killed
before its messages left): the job records by transaction_id, so a message sent twice is
recorded once.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("decisions.publisher")
REPUBLISH_SECONDS = 10.0


class DecisionPublisher:
    def __init__(self, brokers: str, topic: str, records=None):
        from confluent_kafka import Producer

        self.topic = topic
        self.records = records  # DecisionRecords, or None (nothing to acknowledge: degraded answers)
        self._producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 2,
                                   "message.timeout.ms": 30_000, "socket.connection.setup.timeout.ms": 3_000})
        self._delivered: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="decisions-publisher", daemon=True)
        self.errors = 0

    def start(self) -> DecisionPublisher:
        self._thread.start()
        return self

    def publish(self, transaction_id: str, user_id: str, message: bytes, acknowledge: bool = True) -> None:
        def on_delivery(err, _msg):
            if err is not None:
                self.errors += 1
                log.warning("decision %s not delivered yet (%s): kept unpublished", transaction_id, err)
            elif acknowledge:
                with self._lock:
                    self._delivered.append(transaction_id)

        try:
            self._producer.produce(self.topic, key=str(user_id).encode("utf-8"), value=message, on_delivery=on_delivery)
        except BufferError:  # the local queue is full (Kafka down for long): the set keeps it
            log.warning("producer queue full: decision %s left to the republisher", transaction_id)

    def _serve(self) -> None:
        self.republish(0.0)  # what an earlier run left unacknowledged (a crash, Kafka down) goes first
        waited = 0.0
        while not self._stop.is_set():
            self._producer.poll(0.05)
            self._acknowledge()
            waited += 0.05
            if waited >= REPUBLISH_SECONDS:
                waited = 0.0
                self.republish()

    def _acknowledge(self) -> None:
        with self._lock:
            done, self._delivered = self._delivered, []
        if done and self.records is not None:
            try:
                self.records.published(done)
            except Exception as exc:  # noqa: BLE001 - the store is down: republished later, recorded once
                log.warning("could not mark %d decision(s) published (%s)", len(done), exc)

    def republish(self, older_than_seconds: float = REPUBLISH_SECONDS) -> int:
        """Produce again the messages still unpublished after ``older_than_seconds``."""
        if self.records is None:
            return 0
        try:
            pending = self.records.unpublished(older_than_seconds)
        except Exception as exc:  # noqa: BLE001 - the store is down: try again next time
            log.warning("unpublished decisions not readable (%s)", exc)
            return 0
        import json

        for tid, message in pending.items():
            self.publish(tid, json.loads(message)["user_id"], message)
        if pending:
            log.info("republished %d decision(s)", len(pending))
        return len(pending)

    def flush(self, timeout: float = 10.0) -> int:
        remaining = self._producer.flush(timeout)
        self._acknowledge()
        return remaining

    def stop(self) -> None:
        self._stop.set()
        self.flush(5.0)
