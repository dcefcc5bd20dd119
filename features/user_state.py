"""Per-user stateful features: ONE pure function for training and streaming.

:func:`user_window_features` takes a user's retained state and that user's new events and
returns their features plus the new state. Training (features.batch) computes every user's
history in one vectorised call of the same core (:func:`window_features`), which is what the
streaming job's stateful processor (features.stream) computes micro-batch by micro-batch: per
bucket of users, :func:`users_window_features` over a :class:`BucketState` (the per-user states
of many users as flat arrays), equal to :func:`user_window_features` called user by user.

Semantics (exact on both paths while events of a user arrive in event-time order):
- A user's events are ordered by (transaction_time, transaction_id). "Earlier" means earlier in
  that order, so a transaction never sees itself or anything after it; equal times are broken
  by transaction_id.
- A window of length W for an event at time t holds the earlier events with time > t - W.
- "New" merchant/country/device: no earlier event of the user with that value within
  SEEN_HORIZON_SECONDS.
- The state keeps the events of the last LONGEST_WINDOW_SECONDS (relative to the user's newest
  event) and the last-seen time of each merchant/country/device within SEEN_HORIZON_SECONDS,
  bounded by MAX_HISTORY_EVENTS and MAX_SEEN_ITEMS (only pathological users reach the bounds).
- An event older than the user's newest processed event (late) gets exact window features, but
  its "new" flags are judged against everything already seen.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from features.definition import (
    LONGEST_WINDOW_SECONDS,
    MAX_HISTORY_EVENTS,
    MAX_SEEN_ITEMS,
    NO_PREVIOUS_SECONDS,
    SEEN_HORIZON_SECONDS,
    TINY_AMOUNT,
    WINDOWS_SECONDS,
)
from features.stateless import MICROS_PER_SECOND, epoch_micros, merchant_key

SEEN_KINDS = ("merchant", "country", "device")
USER_FEATURES: list[str] = [
    *(f"user_txn_count_{w}" for w in WINDOWS_SECONDS),
    *(f"user_amount_sum_{w}" for w in WINDOWS_SECONDS),
    *(f"user_amount_mean_{w}" for w in WINDOWS_SECONDS),
    "user_seconds_since_prev",
    "user_amount_ratio_30d",
    "user_tiny_count_1h",
    "user_other_country_count_24h",
    "user_new_merchant",
    "user_new_country",
    "user_new_device",
]
_SEEN_HORIZON_US = SEEN_HORIZON_SECONDS * MICROS_PER_SECOND
_LONGEST_WINDOW_US = LONGEST_WINDOW_SECONDS * MICROS_PER_SECOND
_NO_TIME = np.iinfo(np.int64).min


def _empty(dtype) -> np.ndarray:
    return np.array([], dtype=dtype)


@dataclass
class UserState:
    """What the stream remembers about one user between micro-batches.

    Plain arrays and strings, so it round-trips through the Spark state store
    (:meth:`to_record` / :meth:`from_record`).
    """

    time_us: np.ndarray = field(default_factory=lambda: _empty("int64"))
    transaction_id: np.ndarray = field(default_factory=lambda: _empty(object))
    amount: np.ndarray = field(default_factory=lambda: _empty("float64"))
    country: np.ndarray = field(default_factory=lambda: _empty(object))
    seen_items: dict[str, np.ndarray] = field(default_factory=lambda: {k: _empty(object) for k in SEEN_KINDS})
    seen_time_us: dict[str, np.ndarray] = field(
        default_factory=lambda: {k: _empty("int64") for k in SEEN_KINDS}
    )

    RECORD_FIELDS = (
        "time_us",
        "transaction_id",
        "amount",
        "country",
        *(f"seen_{k}" for k in SEEN_KINDS),
        *(f"seen_{k}_time_us" for k in SEEN_KINDS),
    )

    def to_record(self) -> tuple:
        """The state as a tuple of plain Python lists, in RECORD_FIELDS order."""
        return (
            [int(v) for v in self.time_us],
            [str(v) for v in self.transaction_id],
            [float(v) for v in self.amount],
            [str(v) for v in self.country],
            *([str(v) for v in self.seen_items[k]] for k in SEEN_KINDS),
            *([int(v) for v in self.seen_time_us[k]] for k in SEEN_KINDS),
        )

    @classmethod
    def from_record(cls, record) -> UserState:
        """Rebuild a state from :meth:`to_record` output (lists or arrays, any sequence type)."""
        if len(record) != len(cls.RECORD_FIELDS):
            raise ValueError(f"user state record has {len(record)} fields, expected {len(cls.RECORD_FIELDS)}")
        n = len(SEEN_KINDS)
        items, times = record[4 : 4 + n], record[4 + n : 4 + 2 * n]

        def arr(values, dtype):
            return np.asarray(list(values) if values is not None else [], dtype=dtype)

        return cls(
            time_us=arr(record[0], "int64"),
            transaction_id=arr(record[1], object),
            amount=arr(record[2], "float64"),
            country=arr(record[3], object),
            seen_items={k: arr(v, object) for k, v in zip(SEEN_KINDS, items, strict=True)},
            seen_time_us={k: arr(v, "int64") for k, v in zip(SEEN_KINDS, times, strict=True)},
        )

    def is_empty(self) -> bool:
        return len(self.time_us) == 0 and all(len(v) == 0 for v in self.seen_items.values())


# --------------------------------------------------------------------------------------------
# Vectorised building blocks. Arrays are "segmented": rows sorted by (segment, time); a segment
# is one user (or one user-and-country pair). No Python loop over rows anywhere.
# --------------------------------------------------------------------------------------------


def count_at_or_before(data_seg, data_t, query_seg, query_t) -> np.ndarray:
    """For each query, the number of data rows in earlier segments or in its segment at or before its time.

    With data sorted by (segment, time) this is the index of the first data row of the query's
    segment that is later than the query time: a segmented ``searchsorted(side="right")``.
    Segments are laid end to end on one int64 axis (each shifted past the previous one), so a
    single searchsorted answers all queries.
    """
    data_seg, data_t = np.asarray(data_seg, "int64"), np.asarray(data_t, "int64")
    query_seg, query_t = np.asarray(query_seg, "int64"), np.asarray(query_t, "int64")
    segs, dense = np.unique(np.concatenate([data_seg, query_seg]), return_inverse=True)
    times = np.concatenate([data_t, query_t])
    low = np.full(len(segs), np.iinfo(np.int64).max, dtype="int64")
    high = np.full(len(segs), np.iinfo(np.int64).min, dtype="int64")
    np.minimum.at(low, dense, times)
    np.maximum.at(high, dense, times)
    if (high.astype("float64") - low.astype("float64") + 2).sum() >= 2.0**61:  # axis would overflow
        return _count_at_or_before_lexsort(data_seg, data_t, query_seg, query_t)
    offset = np.concatenate([[0], np.cumsum(high - low + 2)[:-1]])
    axis = offset[dense] + (times - low[dense])
    n_data = len(data_t)
    return np.searchsorted(axis[:n_data], axis[n_data:], side="right").astype("int64")


def _count_at_or_before_lexsort(data_seg, data_t, query_seg, query_t) -> np.ndarray:
    """Same as :func:`count_at_or_before` by sorting data and queries together (any time range)."""
    n_data = len(data_t)
    segs = np.concatenate([data_seg, query_seg])
    times = np.concatenate([data_t, query_t])
    is_query = np.concatenate([np.zeros(n_data, "int8"), np.ones(len(query_t), "int8")])
    order = np.lexsort((is_query, times, segs))  # data before queries at equal (segment, time)
    sorted_is_query = is_query[order].astype(bool)
    data_seen = np.cumsum(~sorted_is_query)
    result = np.empty(len(query_t), dtype="int64")
    result[order[sorted_is_query] - n_data] = data_seen[sorted_is_query]
    return result


def window_start(seg: np.ndarray, t: np.ndarray, width_us: int) -> np.ndarray:
    """Index of the first row of each row's segment whose time is > its time - width."""
    return count_at_or_before(seg, t, seg, t - width_us)


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=np.longdouble)
    np.cumsum(values, dtype=np.longdouble, out=out[1:])
    return out


def _segment_prefix(seg: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Like :func:`_prefix` but restarting at 0 at each segment's first row.

    ``out[i]`` is the sum of the rows of i's segment before i, accumulated in the same order and
    precision as ``_prefix`` of that segment alone, so window sums are bit-identical to a call of
    one segment (one user). Segments are laid out as rows of zero-padded matrices, one matrix per
    power-of-two length class (a loop over at most ~30 classes, never over segments or rows);
    ``np.cumsum`` along a matrix row is the same sequential accumulation as on a vector.
    """
    n = len(values)
    out = np.zeros(n + 1, dtype=np.longdouble)
    if n == 0:
        return out
    values = np.asarray(values, dtype=np.longdouble)
    starts = np.flatnonzero(np.concatenate([[True], seg[1:] != seg[:-1]]))
    lengths = np.diff(np.append(starts, n))
    segment_of_row = np.repeat(np.arange(len(starts)), lengths)
    position = np.arange(n) - starts[segment_of_row]
    length_class = np.ceil(np.log2(lengths)).astype("int64")
    row_class = length_class[segment_of_row]
    for c in np.unique(length_class):
        members = np.flatnonzero(length_class == c)
        local = np.full(len(starts), -1, dtype="int64")
        local[members] = np.arange(len(members))
        rows = np.flatnonzero(row_class == c)
        matrix_row, column = local[segment_of_row[rows]], position[rows]
        matrix = np.zeros((len(members), 2**c + 1), dtype=np.longdouble)
        matrix[matrix_row, column + 1] = values[rows]
        out[rows] = np.cumsum(matrix, axis=1)[matrix_row, column]
    out[n] = out[n - 1] + values[n - 1]
    return out


def _run_codes(*sorted_keys: np.ndarray) -> np.ndarray:
    """Code of each row's run of equal key tuples, for rows already sorted by those keys."""
    n = len(sorted_keys[0])
    starts_run = np.zeros(n, dtype=bool)
    starts_run[:1] = True
    for key in sorted_keys:
        starts_run[1:] |= key[1:] != key[:-1]
    return np.cumsum(starts_run).astype("int64")


def _same_group_window_counts(seg, group_code, t, width_us) -> np.ndarray:
    """Per row, earlier rows of the same segment and group within the window."""
    order = np.lexsort((np.arange(len(t)), group_code, seg))  # stable: keeps time order in group
    combined = _run_codes(seg[order], group_code[order])
    t_sorted = t[order]
    counts_sorted = np.arange(len(t)) - window_start(combined, t_sorted, width_us)
    counts = np.empty(len(t), dtype="int64")
    counts[order] = counts_sorted
    return counts


def previous_occurrence_time(seg, item, t, seed_seg, seed_item, seed_t) -> np.ndarray:
    """Time of the previous row of the same segment with the same item (seeds count as earlier rows).

    Rows are sorted by (segment, time); a missing item (None/NaN) gets _NO_TIME and seeds a
    row never. Returns _NO_TIME where there is no previous occurrence.
    """
    n = len(t)
    all_items = np.concatenate([np.asarray(seed_item, object), np.asarray(item, object)])
    codes, _ = pd.factorize(all_items, use_na_sentinel=True)
    segs = np.concatenate([np.asarray(seed_seg, "int64"), np.asarray(seg, "int64")])
    times = np.concatenate([np.asarray(seed_t, "int64"), np.asarray(t, "int64")])
    position = np.concatenate([np.full(len(seed_t), -1, "int64"), np.arange(n)])
    order = np.lexsort((position, codes, segs))
    s_seg, s_code, s_t = segs[order], codes[order], times[order]
    same_as_prev = np.zeros(len(order), dtype=bool)
    same_as_prev[1:] = (s_seg[1:] == s_seg[:-1]) & (s_code[1:] == s_code[:-1]) & (s_code[1:] >= 0)
    prev_sorted = np.full(len(order), _NO_TIME, dtype="int64")
    prev_sorted[1:] = np.where(same_as_prev[1:], s_t[:-1], _NO_TIME)
    is_row = position[order] >= 0
    result = np.full(n, _NO_TIME, dtype="int64")
    result[position[order][is_row]] = prev_sorted[is_row]
    return result


def _new_flag(item, t, prev_t) -> np.ndarray:
    present = ~pd.isna(np.asarray(item, dtype=object))
    unseen = (prev_t == _NO_TIME) | (t - prev_t > _SEEN_HORIZON_US)
    return (present & unseen).astype("float64")


def window_features(
    seg: np.ndarray,
    t: np.ndarray,
    amount: np.ndarray,
    items: dict[str, np.ndarray],
    seeds: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    segment_sums: bool = False,
) -> dict[str, np.ndarray]:
    """USER_FEATURES of every row: the core that the batch and streaming paths both call.

    Args:
        seg: int64 user code of each row; rows sorted by (seg, t, transaction_id).
        t: int64 event time in epoch microseconds.
        amount: float64 amounts.
        items: "merchant", "country", "device" -> object array (None where missing).
        seeds: optional kind -> (seg, item, last_seen_us) of values seen before these rows.
        segment_sums: accumulate amounts per segment (:func:`_segment_prefix`): window sums
            bit-identical to calling each segment alone (the streaming bucket path uses it);
            False (default): one running sum over all rows (equal within rounding).
    """
    seeds = seeds or {}
    n = len(t)
    index = np.arange(n)
    out: dict[str, np.ndarray] = {}
    amount_prefix = _segment_prefix(seg, amount) if segment_sums else _prefix(amount)
    starts = {w: window_start(seg, t, s * MICROS_PER_SECOND) for w, s in WINDOWS_SECONDS.items()}
    for w, lo in starts.items():
        count = index - lo
        total = (amount_prefix[index] - amount_prefix[lo]).astype("float64")
        out[f"user_txn_count_{w}"] = count.astype("float64")
        out[f"user_amount_sum_{w}"] = total
        out[f"user_amount_mean_{w}"] = np.divide(total, count, out=np.zeros(n), where=count > 0)
    has_prev = np.zeros(n, dtype=bool)
    has_prev[1:] = seg[1:] == seg[:-1]
    gap = np.full(n, NO_PREVIOUS_SECONDS)
    gap[1:] = np.where(has_prev[1:], (t[1:] - t[:-1]) / MICROS_PER_SECOND, NO_PREVIOUS_SECONDS)
    out["user_seconds_since_prev"] = np.minimum(gap, NO_PREVIOUS_SECONDS)
    mean_30d = out["user_amount_mean_30d"]
    out["user_amount_ratio_30d"] = np.divide(amount, mean_30d, out=np.ones(n), where=mean_30d > 0)
    tiny_prefix = np.concatenate([[0], np.cumsum(amount < TINY_AMOUNT)])
    out["user_tiny_count_1h"] = (tiny_prefix[index] - tiny_prefix[starts["1h"]]).astype("float64")
    country_code, _ = pd.factorize(np.asarray(items["country"], dtype=object))
    same_country = _same_group_window_counts(seg, country_code, t, WINDOWS_SECONDS["24h"] * MICROS_PER_SECOND)
    out["user_other_country_count_24h"] = out["user_txn_count_24h"] - same_country
    for kind in SEEN_KINDS:
        s_seg, s_item, s_t = seeds.get(kind, (_empty("int64"), _empty(object), _empty("int64")))
        prev_t = previous_occurrence_time(seg, items[kind], t, s_seg, s_item, s_t)
        out[f"user_new_{kind}"] = _new_flag(items[kind], t, prev_t)
    return out


# --------------------------------------------------------------------------------------------
# Event frames -> arrays, and the per-user streaming step.
# --------------------------------------------------------------------------------------------


def event_arrays(events: pd.DataFrame) -> dict[str, np.ndarray]:
    """Arrays the core needs from raw events: time, id, amount and the seen-item values."""
    if "device_id" in events.columns:
        device = events["device_id"].to_numpy(object)
        device = np.where(pd.isna(device), None, device)
    else:
        device = np.full(len(events), None, dtype=object)
    return {
        "time_us": epoch_micros(events["transaction_time"]),
        "transaction_id": events["transaction_id"].to_numpy(object).astype(str).astype(object),
        "amount": events["amount"].to_numpy("float64"),
        "merchant": merchant_key(events).to_numpy(object),
        "country": events["country"].to_numpy(object),
        "device": device,
    }


def _seen_after(state: UserState, kind: str, items: np.ndarray, times: np.ndarray, newest_us: int):
    """Last-seen times of one kind after adding (items, times); expired and excess items dropped."""
    all_items = np.concatenate([state.seen_items[kind], items])
    all_times = np.concatenate([state.seen_time_us[kind], times])
    present = ~pd.isna(all_items)
    unique_items, inverse = np.unique(all_items[present].astype(str), return_inverse=True)
    last = np.full(len(unique_items), _NO_TIME, dtype="int64")
    np.maximum.at(last, inverse, all_times[present])
    keep = last >= newest_us - _SEEN_HORIZON_US
    unique_items, last = unique_items[keep], last[keep]
    if len(last) > MAX_SEEN_ITEMS:  # most recently seen first, ties by item; then back to item order
        ranked = np.lexsort((unique_items, -last))[:MAX_SEEN_ITEMS]
        ranked.sort()
        unique_items, last = unique_items[ranked], last[ranked]
    return unique_items.astype(object), last


def _next_state(state: UserState, combined: dict[str, np.ndarray], new_rows: np.ndarray) -> UserState:
    """State after processing: the last 30 days of events and the unexpired seen items."""
    newest = int(combined["time_us"].max())
    keep = np.flatnonzero(combined["time_us"] > newest - _LONGEST_WINDOW_US)[-MAX_HISTORY_EVENTS:]
    seen_items, seen_times = {}, {}
    for kind in SEEN_KINDS:
        items = combined[kind][new_rows]
        seen_items[kind], seen_times[kind] = _seen_after(
            state, kind, items, combined["time_us"][new_rows], newest
        )
    return UserState(
        time_us=combined["time_us"][keep],
        transaction_id=combined["transaction_id"][keep],
        amount=combined["amount"][keep],
        country=combined["country"][keep],
        seen_items=seen_items,
        seen_time_us=seen_times,
    )


def user_window_features(
    prior_state: UserState | None, events: pd.DataFrame
) -> tuple[pd.DataFrame, UserState]:
    """Features of one user's new events given the state left by the user's earlier events.

    Args:
        prior_state: state returned by the previous call for this user, or None for a new user.
        events: the user's new raw events (any order; the raw columns of the message contract).

    Raises:
        ValueError: events of several users, or a missing/unparseable transaction_time.

    Returns:
        (features, new_state): ``features`` has USER_FEATURES columns and the index of ``events``;
        ``new_state`` is what to store for the next call.
    """
    if "user_id" in events.columns and events["user_id"].nunique(dropna=False) > 1:
        raise ValueError(
            f"events must belong to one user; got user_id values {events['user_id'].unique()[:5].tolist()}"
        )
    state = prior_state if prior_state is not None else UserState()
    new = event_arrays(events)
    n_hist, n_new = len(state.time_us), len(new["time_us"])
    no_items = np.full(n_hist, None, dtype=object)
    combined = {
        "time_us": np.concatenate([state.time_us, new["time_us"]]),
        "transaction_id": np.concatenate([state.transaction_id, new["transaction_id"]]),
        "amount": np.concatenate([state.amount, new["amount"]]),
        "country": np.concatenate([state.country, new["country"]]),
        "merchant": np.concatenate([no_items, new["merchant"]]),
        "device": np.concatenate([no_items, new["device"]]),
    }
    # Sort by (time, transaction_id). History rows carry no merchant/device (the seeds do).
    order = np.lexsort((combined["transaction_id"].astype(str), combined["time_us"]))
    sorted_cols = {k: v[order] for k, v in combined.items()}
    items = {k: sorted_cols[k] for k in SEEN_KINDS}
    seeds = {
        k: (np.zeros(len(state.seen_items[k]), "int64"), state.seen_items[k], state.seen_time_us[k])
        for k in SEEN_KINDS
    }
    feats = window_features(
        np.zeros(len(order), "int64"), sorted_cols["time_us"], sorted_cols["amount"], items, seeds
    )
    is_new_sorted = order >= n_hist
    sorted_position = np.empty(n_new, dtype="int64")
    sorted_position[order[is_new_sorted] - n_hist] = np.flatnonzero(is_new_sorted)
    features = pd.DataFrame(
        {name: feats[name][sorted_position] for name in USER_FEATURES}, index=events.index
    )
    new_positions = np.arange(n_hist, n_hist + n_new)
    return features, _next_state(state, combined, new_positions)


# --------------------------------------------------------------------------------------------
# Many users at once: the streaming job's state per bucket of users.
# --------------------------------------------------------------------------------------------

_KIND_CODE = {kind: code for code, kind in enumerate(SEEN_KINDS)}
_PRUNE_AFTER_US = _SEEN_HORIZON_US + 86_400 * MICROS_PER_SECOND
_BUCKET_MAGIC = b"FBS1"


def _ipc_bytes(columns: dict[str, pa.Array]) -> bytes:
    batch = pa.record_batch(columns)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _ipc_columns(blob: bytes) -> dict[str, np.ndarray]:
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _strings(values) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)


@dataclass
class BucketState:
    """What the stream remembers about MANY users (one bucket of user_ids), as flat arrays.

    Per user, the same content as a :class:`UserState`: ``event_*`` rows are the retained events
    (a user's rows keep their relative order, the order UserState keeps them in), ``seen_*`` rows
    the last-seen time of each (kind, item). ``users`` holds the user_ids; ``event_user`` and
    ``seen_user`` index into it. Serialised compactly with :meth:`to_bytes` (Arrow IPC, zstd) for
    a Spark ValueState with one BinaryType field.
    """

    users: np.ndarray = field(default_factory=lambda: _empty(object))
    event_user: np.ndarray = field(default_factory=lambda: _empty("int64"))
    time_us: np.ndarray = field(default_factory=lambda: _empty("int64"))
    transaction_id: np.ndarray = field(default_factory=lambda: _empty(object))
    amount: np.ndarray = field(default_factory=lambda: _empty("float64"))
    country: np.ndarray = field(default_factory=lambda: _empty(object))
    seen_user: np.ndarray = field(default_factory=lambda: _empty("int64"))
    seen_kind: np.ndarray = field(default_factory=lambda: _empty("int8"))  # index in SEEN_KINDS
    seen_item: np.ndarray = field(default_factory=lambda: _empty(object))
    seen_time_us: np.ndarray = field(default_factory=lambda: _empty("int64"))

    def is_empty(self) -> bool:
        return len(self.users) == 0

    def to_bytes(self) -> bytes:
        """Three Arrow IPC streams (users, events, seen items) behind a small header."""
        parts = [
            _ipc_bytes({"user_id": _strings(self.users)}),
            _ipc_bytes(
                {
                    "user": pa.array(self.event_user, type=pa.int32()),
                    "time_us": pa.array(self.time_us, type=pa.int64()),
                    "transaction_id": _strings(self.transaction_id),
                    "amount": pa.array(self.amount, type=pa.float64()),
                    "country": _strings(self.country),
                }
            ),
            _ipc_bytes(
                {
                    "user": pa.array(self.seen_user, type=pa.int32()),
                    "kind": pa.array(self.seen_kind, type=pa.int8()),
                    "item": _strings(self.seen_item),
                    "time_us": pa.array(self.seen_time_us, type=pa.int64()),
                }
            ),
        ]
        header = _BUCKET_MAGIC + struct.pack("<3Q", *(len(p) for p in parts))
        return header + b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> BucketState:
        """Rebuild a state from :meth:`to_bytes` output."""
        blob = bytes(blob)
        if blob[:4] != _BUCKET_MAGIC:
            raise ValueError("not a BucketState blob (bad header)")
        sizes = struct.unpack("<3Q", blob[4:28])
        bounds = np.cumsum([28, *sizes])
        users, events, seen = (_ipc_columns(blob[bounds[i] : bounds[i + 1]]) for i in range(3))

        def obj(values):
            return np.asarray(values, dtype=object)

        return cls(
            users=obj(users["user_id"]),
            event_user=events["user"].astype("int64"),
            time_us=events["time_us"].astype("int64"),
            transaction_id=obj(events["transaction_id"]),
            amount=events["amount"].astype("float64"),
            country=obj(events["country"]),
            seen_user=seen["user"].astype("int64"),
            seen_kind=seen["kind"].astype("int8"),
            seen_item=obj(seen["item"]),
            seen_time_us=seen["time_us"].astype("int64"),
        )

    def user_states(self) -> dict[str, UserState]:
        """Each user's content as a UserState (a loop over users: for tests and inspection only)."""
        out = {}
        for code, user in enumerate(self.users):
            rows, seen = self.event_user == code, self.seen_user == code
            out[user] = UserState(
                time_us=self.time_us[rows],
                transaction_id=self.transaction_id[rows],
                amount=self.amount[rows],
                country=self.country[rows],
                seen_items={k: self.seen_item[seen & (self.seen_kind == c)] for k, c in _KIND_CODE.items()},
                seen_time_us={
                    k: self.seen_time_us[seen & (self.seen_kind == c)] for k, c in _KIND_CODE.items()
                },
            )
        return out


def _group_max(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, _NO_TIME, dtype="int64")
    np.maximum.at(out, groups, values)
    return out


def _seen_after_many(user, kind, item, time_us, newest_us) -> tuple[np.ndarray, ...]:
    """:func:`_seen_after` of many (user, kind) groups at once: last-seen time of each unexpired
    item, at most MAX_SEEN_ITEMS per (user, kind) (most recent first, ties by item), sorted by
    (user, kind, item). ``newest_us`` is indexed by user code; missing items are ignored."""
    present = ~pd.isna(item)
    user, kind, time_us = user[present], kind[present], time_us[present]
    item_str = item[present].astype(str)
    item_code, item_values = pd.factorize(item_str, sort=True)  # code order = string order
    order = np.lexsort((item_code, kind, user))
    user, kind, item_code, time_us = user[order], kind[order], item_code[order], time_us[order]
    run = _run_codes(user, kind, item_code) - 1 if len(order) else _empty("int64")
    n_runs = int(run[-1]) + 1 if len(run) else 0
    first = np.flatnonzero(np.diff(np.concatenate([[-1], run])) != 0)
    user, kind, item_code = user[first], kind[first], item_code[first]
    last = _group_max(run, time_us, n_runs)
    keep = last >= newest_us[user] - _SEEN_HORIZON_US
    user, kind, item_code, last = user[keep], kind[keep], item_code[keep], last[keep]
    ranked = np.lexsort((item_code, -last, kind, user))  # within (user, kind): most recent first
    group = _run_codes(user[ranked], kind[ranked]) if len(ranked) else _empty("int64")
    group_start = np.flatnonzero(np.diff(np.concatenate([[0], group])) != 0)
    rank = np.arange(len(ranked)) - np.repeat(group_start, np.diff(np.append(group_start, len(ranked))))
    within = np.sort(ranked[rank < MAX_SEEN_ITEMS])  # back to (user, kind, item) order
    items = np.asarray(item_values, dtype=object)[item_code[within]]
    return user[within], kind[within].astype("int8"), items, last[within]


def users_window_features(
    prior_state: BucketState | None, events: pd.DataFrame
) -> tuple[pd.DataFrame, BucketState]:
    """:func:`user_window_features` of many users in one vectorised pass.

    The result equals calling :func:`user_window_features` user by user with each user's part
    of the state (bit-identical features; per user the same retained state), except that users
    whose newest event is older than the bucket's newest event minus SEEN_HORIZON_SECONDS minus a
    day are dropped from the state: their content is logically expired for any event that is not
    more than a day older than the bucket's newest event (windows, seen items and the
    seconds-since-previous cap are all at most the horizon), so dropping it changes no feature.
    State of users without new events is carried over unchanged.

    Args:
        prior_state: state returned by the previous call for this bucket, or None.
        events: new raw events of any number of users (any order; user_id must be present).

    Raises:
        ValueError: user_id missing, or a missing/unparseable transaction_time.

    Returns:
        (features, new_state): ``features`` has USER_FEATURES columns and the index of ``events``.
    """
    state = prior_state if prior_state is not None else BucketState()
    if "user_id" not in events.columns:
        raise ValueError(f"events need a user_id column; has {list(events.columns)}")
    if events["user_id"].isna().any():
        raise ValueError(f"events.user_id has {int(events['user_id'].isna().sum())} missing value(s)")
    if len(events) == 0:
        return pd.DataFrame({name: _empty("float64") for name in USER_FEATURES}, index=events.index), state
    new = event_arrays(events)
    n_new = len(events)
    codes, uniques = pd.factorize(np.concatenate([state.users, events["user_id"].to_numpy(object)]))
    n_users = len(uniques)
    state_code, new_code = (
        codes[: len(state.users)].astype("int64"),
        codes[len(state.users) :].astype("int64"),
    )
    event_code, seen_code = state_code[state.event_user], state_code[state.seen_user]
    active = np.zeros(n_users, dtype=bool)
    active[new_code] = True
    hist = np.flatnonzero(active[event_code])
    n_hist = len(hist)

    # Per user: the retained events (in kept order) then the new events (in input order).
    no_items = np.full(n_hist, None, dtype=object)
    concat = {
        "user": np.concatenate([event_code[hist], new_code]),
        "time_us": np.concatenate([state.time_us[hist], new["time_us"]]),
        "transaction_id": np.concatenate([state.transaction_id[hist], new["transaction_id"]]),
        "amount": np.concatenate([state.amount[hist], new["amount"]]),
        "country": np.concatenate([state.country[hist], new["country"]]),
        "merchant": np.concatenate([no_items, new["merchant"]]),
        "device": np.concatenate([no_items, new["device"]]),
        "new_row": np.concatenate([np.full(n_hist, -1, dtype="int64"), np.arange(n_new)]),
    }
    grouped = np.argsort(concat["user"], kind="stable")
    combined = {k: v[grouped] for k, v in concat.items()}

    # Features: sort by (user, time, transaction_id), stable like the per-user sort.
    id_rank, _ = pd.factorize(combined["transaction_id"].astype(str).astype(object), sort=True)
    order = np.lexsort((id_rank, combined["time_us"], combined["user"]))
    s = {k: v[order] for k, v in combined.items()}
    seen_active = active[seen_code]
    seeds = {}
    for kind, code in _KIND_CODE.items():
        rows = seen_active & (state.seen_kind == code)
        seeds[kind] = (seen_code[rows], state.seen_item[rows], state.seen_time_us[rows])
    feats = window_features(
        s["user"], s["time_us"], s["amount"], {k: s[k] for k in SEEN_KINDS}, seeds, segment_sums=True
    )
    is_new_sorted = s["new_row"] >= 0
    sorted_position = np.empty(n_new, dtype="int64")
    sorted_position[s["new_row"][is_new_sorted]] = np.flatnonzero(is_new_sorted)
    features = pd.DataFrame(
        {name: feats[name][sorted_position] for name in USER_FEATURES}, index=events.index
    )

    # Next state of the active users (as _next_state per user, vectorised).
    user, t = combined["user"], combined["time_us"]
    newest = _group_max(user, t, n_users)
    in_window = t > newest[user] - _LONGEST_WINDOW_US
    running = np.cumsum(in_window)
    last_running = _group_max(user, running, n_users)
    keep = np.flatnonzero(in_window & (last_running[user] - running < MAX_HISTORY_EVENTS))
    new_rows = combined["new_row"] >= 0
    seen_parts = [
        (
            seen_code[seen_active],
            state.seen_kind[seen_active].astype("int64"),
            state.seen_item[seen_active],
            state.seen_time_us[seen_active],
        )
    ]
    for kind, code in _KIND_CODE.items():
        seen_parts.append(
            (
                user[new_rows],
                np.full(int(new_rows.sum()), code, dtype="int64"),
                combined[kind][new_rows],
                t[new_rows],
            )
        )
    seen_user, seen_kind, seen_item, seen_time = _seen_after_many(
        *(np.concatenate([p[i] for p in seen_parts]) for i in range(4)), newest
    )
    seen_item = seen_item.astype(object)

    # Carry the inactive users over, prune users expired relative to the bucket's newest event.
    idle, idle_seen = np.flatnonzero(~active[event_code]), np.flatnonzero(~seen_active)
    out_user = np.concatenate([event_code[idle], user[keep]])
    out_time = np.concatenate([state.time_us[idle], t[keep]])
    user_newest = _group_max(out_user, out_time, n_users)
    alive = user_newest >= out_time.max() - _PRUNE_AFTER_US
    ev_alive = alive[out_user]
    all_seen_user = np.concatenate([seen_code[idle_seen], seen_user])
    seen_alive = alive[all_seen_user]
    present = np.zeros(n_users, dtype=bool)
    present[out_user[ev_alive]] = True
    present[all_seen_user[seen_alive]] = True
    remap = np.cumsum(present) - 1

    def pick(idle_values, active_values, mask):
        return np.concatenate([idle_values, active_values])[mask]

    ev_user = remap[out_user[ev_alive]]
    ev_order = np.argsort(ev_user, kind="stable")
    sn_user = remap[all_seen_user[seen_alive]]
    sn_kind = pick(state.seen_kind[idle_seen], seen_kind, seen_alive)
    sn_item = pick(state.seen_item[idle_seen], seen_item, seen_alive)
    sn_order = np.lexsort((pd.factorize(sn_item.astype(str).astype(object), sort=True)[0], sn_kind, sn_user))
    new_state = BucketState(
        users=np.asarray(uniques, dtype=object)[present],
        event_user=ev_user[ev_order],
        time_us=out_time[ev_alive][ev_order],
        transaction_id=pick(state.transaction_id[idle], combined["transaction_id"][keep], ev_alive)[ev_order],
        amount=pick(state.amount[idle], combined["amount"][keep], ev_alive)[ev_order],
        country=pick(state.country[idle], combined["country"][keep], ev_alive)[ev_order],
        seen_user=sn_user[sn_order],
        seen_kind=sn_kind[sn_order].astype("int8"),
        seen_item=sn_item[sn_order],
        seen_time_us=pick(state.seen_time_us[idle_seen], seen_time, seen_alive)[sn_order],
    )
    return features, new_state
