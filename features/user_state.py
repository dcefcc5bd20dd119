"""Per-user stateful features: ONE vectorised core for training and streaming.

:func:`window_features` computes USER_FEATURES of every row of many users' events at once.
Training (features.batch.user_features) calls it on the whole history; the streaming job calls
it on each micro-batch's events plus their users' recent events read from the online feature
store (features.online). Both sort a user's events the same way, so an event gets the same
features on both paths from the same earlier events.

Semantics:
- A user's events are ordered by (transaction_time, transaction_id). "Earlier" means earlier in
  that order, so a transaction never sees itself or anything after it; equal times are broken
  by transaction_id.
- A window of length W for an event at time t holds the earlier events with time > t - W.
- "New" merchant/country/device: no earlier event of the user with that value within
  SEEN_HORIZON_SECONDS.
- Seconds since the previous event are capped at SEEN_HORIZON_SECONDS (also the value when
  there is none), so nothing older than the horizon changes a feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definition import (
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
_NO_TIME = np.iinfo(np.int64).min


def _empty(dtype) -> np.ndarray:
    return np.array([], dtype=dtype)


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
# Event frames -> arrays.
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
