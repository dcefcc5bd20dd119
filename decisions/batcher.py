"""Requests grouped into batches for decisions.engine, one batch at a time, in one thread.

While a batch is decided, new requests queue; the next batch takes every queued request it
can (up to ``max_batch``), but at most one per user and per transaction_id: a second request
of the same user waits for the next batch, so it sees the first one's event in the feature
store, exactly as one decision after another would. Batching is what lets one Python process
serve many requests a second: the features and the model are vectorised over the batch.

A request still queued at its deadline (its budget spent waiting) is taken out and gets the
degraded answer (:meth:`Batcher.abandon`); one already taken is decided and answered.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from decisions.engine import ABANDONED, QUEUED, TAKEN, Pending

log = logging.getLogger("decisions.batcher")


class Batcher:
    def __init__(self, engine, max_batch: int = 256):
        self.engine = engine
        self.max_batch = max_batch
        self._queue: deque[Pending] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="decisions-batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify()
        self._thread.join(10)

    def submit(self, pending: Pending) -> None:
        with self._ready:
            self._queue.append(pending)
            self._ready.notify()

    def abandon(self, pending: Pending) -> bool:
        """Take a request whose budget is spent out of the queue and answer it (True): its
        stored decision if it has one, else degraded (DecisionEngine.answer_timeout); False
        when a batch has it already (its answer comes from that batch)."""
        with self._lock:
            if pending.state != QUEUED:
                return False
            pending.state = ABANDONED
        self.engine.answer_timeout(pending)
        return True

    def queued(self) -> int:
        return len(self._queue)

    def _take(self) -> list[Pending]:
        """The next batch (called with the lock held): queued requests in arrival order, one per
        user and per transaction_id; the others stay queued in their order."""
        batch, users, ids, rest = [], set(), set(), deque()
        while self._queue and len(batch) < self.max_batch:
            pending = self._queue.popleft()
            if pending.state != QUEUED:
                continue  # abandoned: answered already
            if pending.user_id in users or pending.transaction_id in ids:
                rest.append(pending)
                continue
            users.add(pending.user_id)
            ids.add(pending.transaction_id)
            pending.state = TAKEN
            batch.append(pending)
        rest.extend(self._queue)
        self._queue = rest
        return batch

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stop:
                    self._ready.wait()
                if self._stop:
                    return
                batch = self._take()
            if not batch:
                continue
            try:
                self.engine.decide(batch)
            except Exception:
                log.exception("batch of %d failed", len(batch))
            for pending in batch:
                if not pending.done.is_set():
                    pending.finish({"error": "internal", "reason": "not_decided"}, 503)
