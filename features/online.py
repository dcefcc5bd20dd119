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

FIELD_SEPARATOR = "\x1f"
# A FIELD_SEPARATOR inside a text field (the contract accepts it) is stored as NUL, which the
# contract rejects in every string field (bad_characters): members always hold exactly
# len(_FIELDS) fields, and decoding maps NUL back. Members written before are unchanged.
_SEPARATOR_IN_TEXT = "\x00"
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


def _stored_text(value) -> str:
    return str(value).replace(FIELD_SEPARATOR, _SEPARATOR_IN_TEXT)


def encode_members(arrays: dict[str, np.ndarray]) -> list[str]:
    """One sorted-set member per event: its fields joined by FIELD_SEPARATOR (device '' if missing)."""
    device = ["" if d is None else str(d) for d in arrays["device"]]
    rows = zip(arrays["time_us"].tolist(), arrays["transaction_id"], arrays["amount"].tolist(),
               arrays["country"], arrays["merchant"], device, strict=True)
    text = (arrays["transaction_id"], arrays["country"], arrays["merchant"], device)
    if any(FIELD_SEPARATOR in "".join(map(str, values)) for values in text):  # rare
        return [FIELD_SEPARATOR.join((str(t), _stored_text(tid), repr(float(a)), _stored_text(c), _stored_text(m),
                                      _stored_text(d))) for t, tid, a, c, m, d in rows]
    return [FIELD_SEPARATOR.join((str(t), str(tid), repr(float(a)), str(c), str(m), d)) for t, tid, a, c, m, d in rows]


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
    if any(_SEPARATOR_IN_TEXT in text for text in joined):
        fields = [f.replace(_SEPARATOR_IN_TEXT, FIELD_SEPARATOR) for f in fields]
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


# ONE script call per batch for all of its users (redis-py packs and parses each command in
# Python: one call per user cost more than the reads themselves). KEYS = the users' sets,
# ARGV = separator, then (low, high) per key. Reply: {counts of members per key joined by ",",
# every member in range joined by the separator} (members hold exactly len(_FIELDS) fields,
# so the fields come back flat).
_READ_LUA = """
local sep = ARGV[1]
local counts, members = {}, {}
for k = 1, #KEYS do
  local got = redis.call('ZRANGEBYSCORE', KEYS[k], ARGV[2 * k], ARGV[2 * k + 1])
  counts[k] = #got
  for j = 1, #got do members[#members + 1] = got[j] end
end
return {table.concat(counts, ','), table.concat(members, sep)}
"""

# ONE script call per batch that writes every user's events: KEYS = the users' sets, ARGV =
# TTL seconds, then per key: n, the exclusive lower bound of what is kept, n (score, member)
# pairs. ZADD of an existing member changes nothing (idempotent); older events go; TTL refreshed.
_WRITE_LUA = """
local ttl = ARGV[1]
local i = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  local keep_from = ARGV[i + 1]
  i = i + 2
  local j = 0
  while j < n do
    local chunk = {}
    local last = math.min(n, j + 1000)
    for m = j, last - 1 do
      chunk[#chunk + 1] = ARGV[i + 2 * m]
      chunk[#chunk + 1] = ARGV[i + 2 * m + 1]
    end
    redis.call('ZADD', KEYS[k], unpack(chunk))
    j = last
  end
  i = i + 2 * n
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', keep_from)
  redis.call('EXPIRE', KEYS[k], ttl)
end
return #KEYS
"""
_KEYS_PER_CALL = 5_000  # bounds how long one script holds the server


def _resp_command(args: list) -> bytes:
    """One Redis command in RESP, packed at once (redis-py's packer copies its buffer per
    argument: thousands of arguments cost it milliseconds)."""
    texts = [a if type(a) is str else str(a) for a in args]
    if "".join(texts).isascii():  # the common case: a character is a byte, one encode for all
        return (f"*{len(texts)}\r\n" + "".join([f"${len(t)}\r\n{t}\r\n" for t in texts])).encode("ascii")
    return _resp_command_bytes(args)


def _resp_command_bytes(args: list) -> bytes:
    """:func:`_resp_command` an argument at a time (any text; the tests compare the two)."""
    encoded = [a.encode("utf-8") if type(a) is str else str(a).encode("ascii") for a in args]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded)


class FeatureStore:
    """The per-user event sets in one Redis database, read and written by one script call each."""

    def __init__(self, client, prefix: str = ""):
        self.client = client
        self.prefix = prefix
        self._read = client.register_script(_READ_LUA)
        self._write = client.register_script(_WRITE_LUA)

    def user_key(self, user_id: str) -> str:
        return f"{self.prefix}fs:user:{user_id}"

    def _run(self, script, keys: list[str], args: list):
        """EVALSHA of ``script``, the command packed here and sent on a pooled connection; on a
        missing script or a connection problem, redis-py's own call (loads the script, retries).
        Both scripts are safe to run twice (a read; idempotent writes)."""
        import redis

        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([_resp_command(["EVALSHA", script.sha, len(keys), *keys, *args])])
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            pass
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            conn.disconnect()
        finally:
            pool.release(conn)
        return script(keys=keys, args=args)

    def history(self, users: np.ndarray, low_us: np.ndarray, high_us: np.ndarray) -> tuple[np.ndarray, dict]:
        """Stored events of ``users[i]`` with time in [low_us[i], high_us[i]], one round trip.

        Returns (index into ``users`` of each event, decoded event arrays).
        """
        counts, joined = [], []
        lows, highs = low_us.tolist(), high_us.tolist()
        for first in range(0, len(users), _KEYS_PER_CALL):
            last = min(len(users), first + _KEYS_PER_CALL)
            bounds = [str(v) for pair in zip(lows[first:last], highs[first:last], strict=True) for v in pair]
            reply = self._run(self._read, [self.user_key(u) for u in users[first:last]], [FIELD_SEPARATOR, *bounds])
            counts.append(np.array(reply[0].split(","), dtype="int64") if reply[0] else np.zeros(0, "int64"))
            if reply[1]:
                joined.append(reply[1])
        count = np.concatenate(counts) if counts else np.zeros(0, "int64")
        owner = np.repeat(np.arange(len(users)), count)
        return owner, decode_fields(joined, int(count.sum()))

    def append(self, users: np.ndarray, user_of_event: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        """Add events (idempotent: one member per event), drop expired ones, refresh each TTL."""
        members = encode_members(arrays)
        times = arrays["time_us"].astype("int64")
        newest = np.full(len(users), np.iinfo(np.int64).min, dtype="int64")
        np.maximum.at(newest, user_of_event, times)
        order = np.argsort(user_of_event, kind="stable")
        bounds = np.searchsorted(user_of_event[order], np.arange(len(users) + 1)).tolist()
        scores = times.astype(str).tolist()
        keep_from = [f"({v}" for v in (newest - _RETENTION_US).tolist()]
        order = order.tolist()
        present = [code for code in range(len(users)) if bounds[code + 1] > bounds[code]]
        for first in range(0, len(present), _KEYS_PER_CALL):
            codes = present[first:first + _KEYS_PER_CALL]
            args: list = [RETENTION_SECONDS]
            for code in codes:
                rows = order[bounds[code]:bounds[code + 1]]
                args += (len(rows), keep_from[code])
                for r in rows:
                    args += (scores[r], members[r])
            self._run(self._write, [self.user_key(users[c]) for c in codes], args)


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
    return pd.DataFrame(online_user_columns(store, events, arrays), index=events.index)


def online_user_columns(store: FeatureStore, events: pd.DataFrame,
                        arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """:func:`online_user_features` as arrays by name, in USER_FEATURES order."""
    if len(events) == 0:
        return {name: np.array([], "float64") for name in USER_FEATURES}
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
    return {name: feats[name][mine] for name in USER_FEATURES}


def append_events(store: FeatureStore, events: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write ``events`` to the store (after their features were computed)."""
    if len(events) == 0:
        return
    arrays = arrays if arrays is not None else event_arrays(events)
    code, users = _user_codes(events)
    store.append(users, code, arrays)
