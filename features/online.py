"""Online per-user features: recent events in a Redis feature store, features AS OF each event.

The stream keeps no per-user state of its own. Per user, the feature store holds the user's
recent events (a sorted set ``<prefix>fs:user:<user_id>`` scored by event time, one member per
event that encodes its time, transaction_id, amount, country, merchant key and device). A
micro-batch reads, in one pipelined round trip, only the events of ITS users within the horizon
before their batch events, adds its own events, and computes every event's features from the
strictly earlier events of its user with :func:`features.user_state.window_features`, the core
that training (features.batch) replays history through. Then it writes its events back (one more
pipelined round trip): ZADD of the same member twice adds nothing, so a replayed micro-batch
changes nothing, and the cost of a batch follows its rows (and their users' recent history),
never the number of users in the store.

Semantics (the same as training's, for the events the store has when the event is scored):
- "Earlier" is the order (transaction_time, transaction_id) within a user, as in
  features.batch.user_features: features of an event never depend on arrival order, on the
  micro-batch it came in, or on the Kafka partition that carried it.
- An event that arrives after later events of its user were already scored gets exactly the
  features training gives it; the later events keep the features they were scored with (a
  decision is never re-made), and from then on every event sees it.
- Events older than the user's newest batch event minus SEEN_HORIZON_SECONDS and a day are
  removed from the store, and a user's set expires after that long without a write: windows,
  the seen-items horizon and the seconds-since-previous cap all end at the horizon, so neither
  changes a feature of an event that is not more than a day older than its user's newest.

Use:
    store = FeatureStore(redis_client, prefix)
    user = online_user_features(store, events)     # USER_FEATURES, index of events
    store.append(events)                           # after the features; idempotent
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.definition import SEEN_HORIZON_SECONDS
from features.stateless import MICROS_PER_SECOND
from features.user_state import SEEN_KINDS, USER_FEATURES, event_arrays, window_features

FIELD_SEPARATOR = "\x1f"  # never inside a field: the message contract rejects control characters
_FIELDS = ("time_us", "transaction_id", "amount", "country", "merchant", "device")
_HORIZON_US = SEEN_HORIZON_SECONDS * MICROS_PER_SECOND
RETENTION_SECONDS = SEEN_HORIZON_SECONDS + 86_400
_RETENTION_US = RETENTION_SECONDS * MICROS_PER_SECOND


@dataclass(frozen=True)
class FeatureStoreTarget:
    """Where the feature store is: plain values, safe to ship to executors."""

    host: str
    port: int
    password: str
    prefix: str = ""

    def connect(self, timeout: float = 5.0):
        import redis

        return redis.Redis(host=self.host, port=self.port, password=self.password or None,
                           socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)


def encode_members(arrays: dict[str, np.ndarray]) -> list[str]:
    """One sorted-set member per event: its fields joined by FIELD_SEPARATOR (device '' if missing)."""
    device = ["" if d is None else str(d) for d in arrays["device"]]
    return [
        FIELD_SEPARATOR.join((str(t), str(tid), repr(float(a)), str(c), str(m), d))
        for t, tid, a, c, m, d in zip(
            arrays["time_us"].tolist(), arrays["transaction_id"], arrays["amount"].tolist(),
            arrays["country"], arrays["merchant"], device, strict=True,
        )
    ]


def decode_fields(joined: list[str], count: int) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_members` for ``count`` members whose fields are all joined by
    FIELD_SEPARATOR (in strings ``joined``), vectorised: one join and one split for all."""
    if count == 0:
        return {"time_us": np.array([], "int64"), "amount": np.array([], "float64"),
                **{k: np.array([], object) for k in ("transaction_id", "country", "merchant", "device")}}
    fields = FIELD_SEPARATOR.join(joined).split(FIELD_SEPARATOR)
    n = len(_FIELDS)
    if len(fields) != n * count:
        raise ValueError("feature store member with a wrong number of fields")
    device = np.array(fields[5::n], dtype=object)
    device[device == ""] = None
    return {
        "time_us": np.array(fields[0::n]).astype("int64"),
        "transaction_id": np.array(fields[1::n], dtype=object),
        "amount": np.array(fields[2::n]).astype("float64"),
        "country": np.array(fields[3::n], dtype=object),
        "merchant": np.array(fields[4::n], dtype=object),
        "device": device,
    }


# One reply per user instead of one per event: the members in range, joined by FIELD_SEPARATOR
# on the server (members hold exactly len(_FIELDS) fields, so the fields come back flat).
_RANGE_JOINED_LUA = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
return table.concat(members, ARGV[3])
"""


class FeatureStore:
    """The per-user event sets in one Redis database, read and written with pipelines."""

    def __init__(self, client, prefix: str = ""):
        self.client = client
        self.prefix = prefix
        self._range_joined = client.register_script(_RANGE_JOINED_LUA)

    def user_key(self, user_id: str) -> str:
        return f"{self.prefix}fs:user:{user_id}"

    def history(self, users: np.ndarray, low_us: np.ndarray, high_us: np.ndarray) -> tuple[np.ndarray, dict]:
        """Stored events of ``users[i]`` with time in [low_us[i], high_us[i]], one round trip.

        Returns (index into ``users`` of each event, decoded event arrays).
        """
        pipe = self.client.pipeline(transaction=False)
        for user, low, high in zip(users, low_us.tolist(), high_us.tolist(), strict=True):
            self._range_joined(keys=[self.user_key(user)], args=[low, high, FIELD_SEPARATOR], client=pipe)
        replies = pipe.execute()
        n_fields = len(_FIELDS)
        counts = np.array([(r.count(FIELD_SEPARATOR) + 1) // n_fields if r else 0 for r in replies], "int64")
        owner = np.repeat(np.arange(len(users)), counts)
        return owner, decode_fields([r for r in replies if r], int(counts.sum()))

    def append(self, users: np.ndarray, user_of_event: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        """Add events (idempotent: one member per event), drop expired ones, refresh each TTL."""
        members = encode_members(arrays)
        newest = np.full(len(users), np.iinfo(np.int64).min, dtype="int64")
        np.maximum.at(newest, user_of_event, arrays["time_us"])
        order = np.argsort(user_of_event, kind="stable")
        bounds = np.searchsorted(user_of_event[order], np.arange(len(users) + 1))
        pipe = self.client.pipeline(transaction=False)
        for code, user in enumerate(users):
            rows = order[bounds[code] : bounds[code + 1]]
            if len(rows) == 0:
                continue
            key = self.user_key(user)
            pipe.zadd(key, {members[r]: int(arrays["time_us"][r]) for r in rows})
            pipe.zremrangebyscore(key, "-inf", f"({int(newest[code]) - _RETENTION_US}")
            pipe.expire(key, RETENTION_SECONDS)
        pipe.execute()


def _user_codes(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    codes, users = pd.factorize(events["user_id"].astype(str).to_numpy(object))
    return codes.astype("int64"), np.asarray(users, dtype=object)


def event_order(seg: np.ndarray, time_us: np.ndarray, transaction_id: np.ndarray) -> np.ndarray:
    """Order of rows by (seg, time, transaction_id) as features.batch sorts them; transaction ids
    are compared only where (seg, time) ties, which is rare, instead of sorting every id."""
    order = np.lexsort((time_us, seg))
    s_seg, s_t = seg[order], time_us[order]
    tie = np.zeros(len(order), dtype=bool)
    tie[1:] = (s_seg[1:] == s_seg[:-1]) & (s_t[1:] == s_t[:-1])
    if not tie.any():
        return order
    tie[:-1] |= tie[1:]  # both ends of each run of equal (seg, time)
    rows = np.flatnonzero(tie)
    ids = transaction_id[order[rows]].astype(str).astype(object)
    id_rank, _ = pd.factorize(ids, sort=True)
    order[rows] = order[rows][np.lexsort((id_rank, s_t[rows], s_seg[rows]))]
    return order


def online_user_features(store: FeatureStore, events: pd.DataFrame,
                         arrays: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """USER_FEATURES of each event from its user's strictly earlier events (store + ``events``).

    Args:
        store: the feature store (read only here; call :meth:`FeatureStore.append` after).
        events: raw events of any users, any order, unique transaction_id (the message contract's
            columns); events already in the store (a replay) are recognised by transaction_id.
        arrays: ``event_arrays(events)`` when the caller already has it.

    Returns:
        DataFrame with USER_FEATURES and the index of ``events``.
    """
    if len(events) == 0:
        return pd.DataFrame({name: np.array([], "float64") for name in USER_FEATURES}, index=events.index)
    arrays = arrays if arrays is not None else event_arrays(events)
    code, users = _user_codes(events)
    low = np.full(len(users), np.iinfo(np.int64).max, dtype="int64")
    high = np.full(len(users), np.iinfo(np.int64).min, dtype="int64")
    np.minimum.at(low, code, arrays["time_us"])
    np.maximum.at(high, code, arrays["time_us"])
    owner, stored = store.history(users, low - _HORIZON_US, high)
    replayed = pd.Index(arrays["transaction_id"]).get_indexer(stored["transaction_id"]) >= 0
    keep = ~replayed  # the batch's own copy of an event counts, never the stored one too
    n_new = len(events)
    seg = np.concatenate([code, owner[keep]])
    combined = {k: np.concatenate([arrays[k], stored[k][keep]]) for k in _FIELDS}
    order = event_order(seg, combined["time_us"], combined["transaction_id"])
    feats = window_features(seg[order], combined["time_us"][order], combined["amount"][order],
                            {k: combined[k][order] for k in SEEN_KINDS}, segment_sums=True)
    position = np.empty(len(order), dtype="int64")
    position[order] = np.arange(len(order))
    mine = position[:n_new]
    return pd.DataFrame({name: feats[name][mine] for name in USER_FEATURES}, index=events.index)


def append_events(store: FeatureStore, events: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write ``events`` to the store (after their features were computed)."""
    if len(events) == 0:
        return
    arrays = arrays if arrays is not None else event_arrays(events)
    code, users = _user_codes(events)
    store.append(users, code, arrays)
