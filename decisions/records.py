"""The decision service's own records in the feature store's Redis: one per decided transaction.

- ``<prefix>decision:<transaction_id>``: JSON {request_hash, response, message} with a TTL of
  RECORD_TTL_SECONDS. Idempotency: a request whose transaction_id has a record gets the stored
  response back (the same request hash) or a conflict (another hash); nothing is recomputed and
  nothing is added to the feature store. Written with SET NX: the first decision stays.
- ``<prefix>decisions:unpublished``: hash transaction_id -> the decided message not yet
  acknowledged by Kafka (decisions.publisher removes it on delivery and republishes what a
  crash or a Kafka outage left there), so the streaming job gets every decision once it can.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from fraudops.contract.messages import serialize_message
from fraudops.jsonutil import strict_dumps

RECORD_TTL_SECONDS = 35 * 86_400  # beyond the 30-day windows: a retry that late is a new request


def request_hash(record: dict) -> str:
    """SHA-256 of a validated transaction in its canonical serialization (unknown fields and
    whitespace do not count: two bodies that validate to the same transaction are the same request)."""
    return hashlib.sha256(serialize_message(record)).hexdigest()


@dataclass
class StoredDecision:
    request_hash: str
    response: dict


class DecisionRecords:
    """Decision records and the unpublished set, on a redis client (decode_responses=True)."""

    def __init__(self, client, prefix: str = ""):
        self.client = client
        self.prefix = prefix

    def key(self, transaction_id: str) -> str:
        return f"{self.prefix}decision:{transaction_id}"

    @property
    def unpublished_key(self) -> str:
        return f"{self.prefix}decisions:unpublished"

    def get_many(self, transaction_ids: list[str]) -> dict[str, StoredDecision]:
        if not transaction_ids:
            return {}
        values = self.client.mget([self.key(t) for t in transaction_ids])
        out = {}
        for tid, value in zip(transaction_ids, values, strict=True):
            if value is not None:
                stored = json.loads(value)
                out[tid] = StoredDecision(stored["request_hash"], stored["response"])
        return out

    def commit(self, entries: list[tuple[str, str, dict, bytes]]) -> list[bool]:
        """Store (transaction_id, request_hash, response, message) records (SET NX) and their
        messages as unpublished, in one round trip; per entry, whether it was new."""
        if not entries:
            return []
        pipe = self.client.pipeline(transaction=False)
        for tid, digest, response, _message in entries:
            pipe.set(self.key(tid), strict_dumps({"request_hash": digest, "response": response},
                                                 separators=(",", ":")), nx=True, ex=RECORD_TTL_SECONDS)
        pipe.hset(self.unpublished_key, mapping={tid: _pending(message) for tid, _, _, message in entries})
        replies = pipe.execute()
        return [bool(r) for r in replies[:len(entries)]]

    def published(self, transaction_ids: list[str]) -> None:
        if transaction_ids:
            self.client.hdel(self.unpublished_key, *transaction_ids)

    def unpublished(self, older_than_seconds: float = 0.0) -> dict[str, bytes]:
        """The messages Kafka has not acknowledged, written at least ``older_than_seconds`` ago."""
        cutoff = time.time() - older_than_seconds
        out = {}
        for tid, value in self.client.hgetall(self.unpublished_key).items():
            written, _, message = value.partition(" ")
            if float(written) <= cutoff:
                out[tid] = message.encode("utf-8")
        return out


def _pending(message: bytes) -> str:
    return f"{time.time():.6f} {message.decode('utf-8')}"
