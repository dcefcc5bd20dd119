"""Per-merchant windowed features from transactions and late labels: ONE definition, two paths.

For a transaction at time t, with ``e = t - label_delay`` and each window W of
MERCHANT_WINDOWS_SECONDS (1d, 7d, 30d), per merchant (merchant_id, else the merchant name):

- ``merchant_txn_count_W``: the merchant's transactions with time in [e - W, e) (strictly
  before e, so with no delay a transaction never counts itself);
- ``merchant_fraud_count_W``: those of them whose latest label known at e (labeled_at <= e) says
  fraud: a label that becomes known after t - label_delay never changes the feature at t;
- ``merchant_fraud_rate_W``: (frauds + strength x prior) / (transactions + strength).

Every count is a number of intervals holding e: a transaction at s is in the window for
e in (s, s + W] and a fraud label adds the part of that interval where it is the latest label.
On the integer microsecond axis these are half-open [start, end) intervals; a counter at e is
``#starts <= e - #ends <= e``, i.e. the running sum of +1/-1 *count events* up to e
(:func:`count_events`, :func:`counts_at`). Both paths evaluate the same events with the same
function, so their values are bit-identical:

- training (features.batch, features.spark_batch): :func:`merchant_features_point_in_time`
  evaluates all count events at each transaction's e;
- the stream: :func:`merchant_snapshot` compacts the count events at ``as_of - label_delay``
  into one base value per merchant and counter plus the events of the next ``valid_for``
  (a small, picklable :class:`MerchantSnapshot` that the job refreshes at least every minute
  and broadcasts); :func:`snapshot_merchant_features` evaluates it at each event's e. The value
  is exact for events with t in [as_of, as_of + valid_for] whenever label_delay >= valid_for
  (everything it needs happened before as_of); outside that range e is clamped to it.

When one transaction has several labels (analyst, then chargeback), the latest known one counts
(ties: the fraud label wins).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.definition import (
    DEFAULT_LABEL_DELAY_SECONDS,
    MERCHANT_PRIOR_FRAUD_RATE,
    MERCHANT_PRIOR_STRENGTH,
    MERCHANT_WINDOWS_SECONDS,
)
from features.stateless import MICROS_PER_SECOND, epoch_micros, map_distinct, merchant_key

WINDOW_SUFFIXES: list[str] = list(MERCHANT_WINDOWS_SECONDS)
WINDOW_MICROS = np.array([MERCHANT_WINDOWS_SECONDS[s] * MICROS_PER_SECOND for s in WINDOW_SUFFIXES], "int64")
TXN_COUNT_FEATURES = [f"merchant_txn_count_{s}" for s in WINDOW_SUFFIXES]
FRAUD_COUNT_FEATURES = [f"merchant_fraud_count_{s}" for s in WINDOW_SUFFIXES]
FRAUD_RATE_FEATURES = [f"merchant_fraud_rate_{s}" for s in WINDOW_SUFFIXES]
MERCHANT_FEATURES = [name for s in WINDOW_SUFFIXES for name in
                     (f"merchant_txn_count_{s}", f"merchant_fraud_count_{s}", f"merchant_fraud_rate_{s}")]
# counter k < len(WINDOW_SUFFIXES): transactions of window k; else frauds of window k - len
N_COUNTERS = 2 * len(WINDOW_SUFFIXES)
LABEL_TIME_COLUMNS = ("labeled_at", "label_time")
COUNT_EVENT_COLUMNS = ["merchant_key", "counter", "time_us", "delta"]
DEFAULT_LABEL_DELAY = dt.timedelta(seconds=DEFAULT_LABEL_DELAY_SECONDS)
DEFAULT_SNAPSHOT_VALIDITY = dt.timedelta(minutes=2)


def smoothed_fraud_rate(frauds, transactions) -> np.ndarray:
    """Bayesian-smoothed fraud rate (frauds + strength * prior) / (transactions + strength).

    With no transactions it is the prior (MERCHANT_PRIOR_FRAUD_RATE).
    """
    frauds = np.asarray(frauds, dtype="float64")
    transactions = np.asarray(transactions, dtype="float64")
    return (frauds + MERCHANT_PRIOR_STRENGTH * MERCHANT_PRIOR_FRAUD_RATE) / (transactions + MERCHANT_PRIOR_STRENGTH)


def label_delay_micros(label_delay) -> int:
    """A delay given as timedelta, pandas Timedelta or seconds, in microseconds (>= 0)."""
    if isinstance(label_delay, dt.timedelta | pd.Timedelta):
        micros = int(pd.Timedelta(label_delay).value // 1_000)
    elif isinstance(label_delay, int | float | np.integer | np.floating) and np.isfinite(label_delay):
        micros = int(round(float(label_delay) * MICROS_PER_SECOND))
    else:
        raise ValueError(f"label_delay must be a timedelta or a number of seconds, got {label_delay!r}")
    if micros < 0:
        raise ValueError(f"label_delay must not be negative, got {label_delay!r}")
    return micros


def _label_value(value):
    """0/1 for a boolean or 0/1 number; None for anything else."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return int(value)
    return None


def _label_time_column(labels: pd.DataFrame) -> str:
    for name in LABEL_TIME_COLUMNS:
        if name in labels.columns:
            return name
    raise ValueError(
        f"labels needs a label time column, one of {list(LABEL_TIME_COLUMNS)}; has {list(labels.columns)}"
    )


def _lookup(transactions: pd.DataFrame, ids: pd.Series, values: np.ndarray) -> pd.Series:
    table = pd.Series(values, index=transactions["transaction_id"].astype(str).to_numpy())
    return ids.map(table[~table.index.duplicated()])


def normalize_labels(labels: pd.DataFrame, transactions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Known labels as (transaction_id, merchant_key, is_fraud 0/1, labeled_us, txn_us).

    The merchant and the transaction time come from the labels' own merchant[/merchant_id] and
    transaction_time columns when present, else from ``transactions`` by transaction_id. Rows
    without a label time or is_fraud are not known yet and are left out.

    Raises:
        ValueError: a required column is missing, is_fraud is not 0/1, or a label's transaction
            (merchant, time) is unknown.
    """
    for name in ("transaction_id", "is_fraud"):
        if name not in labels.columns:
            raise ValueError(f"labels is missing column {name!r}; has {list(labels.columns)}")
    time_column = _label_time_column(labels)
    known = labels[labels[time_column].notna() & labels["is_fraud"].notna()]
    is_fraud = pd.Series(map_distinct(known["is_fraud"], _label_value), index=known.index)
    if not is_fraud.isin([0, 1]).all():
        bad = known.loc[~is_fraud.isin([0, 1]), "is_fraud"].head(5).tolist()
        raise ValueError(f"labels.is_fraud must be 0/1 or boolean, got e.g. {bad}")
    ids = known["transaction_id"].astype(str)
    own = "merchant" in known.columns and "transaction_time" in known.columns
    if own:
        keys, txn_us = merchant_key(known), pd.Series(epoch_micros(known["transaction_time"]), index=known.index)
    elif transactions is not None:
        keys = _lookup(transactions, ids, merchant_key(transactions).to_numpy(object))
        txn_us = _lookup(transactions, ids, epoch_micros(transactions["transaction_time"]))
        if keys.isna().any():
            missing = known.loc[keys.isna(), "transaction_id"].head(5).tolist()
            raise ValueError(
                f"labels refer to {int(keys.isna().sum())} transaction(s) not in transactions, e.g. {missing}"
            )
    else:
        raise ValueError("labels has no merchant/transaction_time columns; pass the transactions they refer to")
    return pd.DataFrame(
        {
            "transaction_id": ids.to_numpy(object),
            "merchant_key": keys.to_numpy(object),
            "is_fraud": is_fraud.astype("int64").to_numpy(),
            "labeled_us": epoch_micros(known[time_column], argument=f"labels.{time_column}"),
            "txn_us": txn_us.to_numpy("int64"),
        }
    )


def _interval_events(keys: np.ndarray, counter: np.ndarray, start: np.ndarray, end: np.ndarray) -> pd.DataFrame:
    """+1 at start, -1 at end of each non-empty [start, end) interval."""
    keep = start < end
    keys, counter, start, end = keys[keep], counter[keep], start[keep], end[keep]
    return pd.DataFrame(
        {
            "merchant_key": np.concatenate([keys, keys]),
            "counter": np.concatenate([counter, counter]).astype("int64"),
            "time_us": np.concatenate([start, end]).astype("int64"),
            "delta": np.concatenate([np.ones(len(start), "int64"), -np.ones(len(end), "int64")]),
        }
    )


def _fraud_spans(labels: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Fraud labels with the time until which each stays the transaction's latest label."""
    tid, _ = pd.factorize(labels["transaction_id"].to_numpy(object))
    order = np.lexsort((labels["is_fraud"].to_numpy(), labels["labeled_us"].to_numpy(), tid))
    ordered, tid = labels.iloc[order], tid[order]
    until = np.full(len(ordered), np.iinfo(np.int64).max // 4, dtype="int64")
    same_next = np.zeros(len(ordered), dtype=bool)
    same_next[:-1] = tid[1:] == tid[:-1]
    until[:-1] = np.where(same_next[:-1], ordered["labeled_us"].to_numpy("int64")[1:], until[:-1])
    fraud = ordered["is_fraud"].to_numpy() == 1
    return ordered[fraud], until[fraud]


def count_events(keys, times_us, labels: pd.DataFrame | None) -> pd.DataFrame:
    """The +1/-1 count events (COUNT_EVENT_COLUMNS) of transactions and their known labels.

    Args:
        keys: merchant key of each transaction; times_us: its time (epoch microseconds).
        labels: output of :func:`normalize_labels`, or None.
    """
    keys = np.asarray(keys, dtype=object)
    times_us = np.asarray(times_us, dtype="int64")
    n_windows = len(WINDOW_MICROS)
    parts = []
    for k, width in enumerate(WINDOW_MICROS):
        parts.append(_interval_events(keys, np.full(len(keys), k), times_us + 1, times_us + width + 1))
    if labels is not None and len(labels):
        fraud, until = _fraud_spans(labels)
        f_keys, txn = fraud["merchant_key"].to_numpy(object), fraud["txn_us"].to_numpy("int64")
        labeled = fraud["labeled_us"].to_numpy("int64")
        for k, width in enumerate(WINDOW_MICROS):
            start = np.maximum(txn + 1, labeled)
            end = np.minimum(txn + width + 1, until)
            parts.append(_interval_events(f_keys, np.full(len(f_keys), n_windows + k), start, end))
    return pd.concat(parts, ignore_index=True)


def _segment_sums_at(seg: np.ndarray, time_us: np.ndarray, delta: np.ndarray,
                     query_seg: np.ndarray, query_t: np.ndarray) -> np.ndarray:
    """For each query, the sum of the deltas of its segment with time <= its time."""
    n = len(seg)
    if n == 0:
        return np.zeros(len(query_seg), dtype="int64")
    all_seg = np.concatenate([seg, query_seg])
    all_t = np.concatenate([time_us, query_t])
    is_query = np.concatenate([np.zeros(n, "int8"), np.ones(len(query_seg), "int8")])
    order = np.lexsort((is_query, all_t, all_seg))  # data before queries at equal (segment, time)
    values = np.concatenate([delta, np.zeros(len(query_seg), "int64")])[order]
    running = np.cumsum(values)
    sorted_seg = all_seg[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_seg[1:] != sorted_seg[:-1]
    before_segment = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    base = np.where(before_segment > 0, running[before_segment - 1], 0)
    out = np.empty(len(query_seg), dtype="int64")
    queries = is_query[order] == 1
    out[order[queries] - n] = (running - base)[queries]
    return out


def counts_at(events: pd.DataFrame, keys, e_us) -> np.ndarray:
    """(n, N_COUNTERS) int64 counts of each merchant at each time e from count events."""
    keys = pd.Series(np.asarray(keys, dtype=object))
    e_us = np.asarray(e_us, dtype="int64")
    codes, _ = pd.factorize(pd.concat([events["merchant_key"], keys], ignore_index=True))
    event_code, query_code = codes[: len(events)].astype("int64"), codes[len(events):].astype("int64")
    seg = event_code * N_COUNTERS + events["counter"].to_numpy("int64")
    query_seg = (query_code[:, None] * N_COUNTERS + np.arange(N_COUNTERS)[None, :]).ravel()
    sums = _segment_sums_at(seg, events["time_us"].to_numpy("int64"), events["delta"].to_numpy("int64"),
                            query_seg, np.repeat(e_us, N_COUNTERS))
    return sums.reshape(len(keys), N_COUNTERS)


def features_from_counts(counts: np.ndarray, index) -> pd.DataFrame:
    """MERCHANT_FEATURES (float64) from :func:`counts_at` output."""
    return pd.DataFrame(columns_from_counts(counts), index=index)[MERCHANT_FEATURES]


def columns_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`features_from_counts` as arrays by name."""
    n_windows = len(WINDOW_SUFFIXES)
    columns: dict[str, np.ndarray] = {}
    for k, suffix in enumerate(WINDOW_SUFFIXES):
        txns, frauds = counts[:, k].astype("float64"), counts[:, n_windows + k].astype("float64")
        columns[f"merchant_txn_count_{suffix}"] = txns
        columns[f"merchant_fraud_count_{suffix}"] = frauds
        columns[f"merchant_fraud_rate_{suffix}"] = smoothed_fraud_rate(frauds, txns)
    return columns


def merchant_features_point_in_time(
    transactions: pd.DataFrame, labels: pd.DataFrame | None, label_delay=DEFAULT_LABEL_DELAY
) -> pd.DataFrame:
    """MERCHANT_FEATURES of each transaction, windows ending at its time minus the label delay.

    Args:
        transactions: ALL the transactions to count (merchant, merchant_id optional,
            transaction_time); the features of each of them are returned (same index).
        labels: output of :func:`normalize_labels`, or None (no fraud known).
        label_delay: timedelta or seconds (see the module docstring).
    """
    times = epoch_micros(transactions["transaction_time"])
    keys = merchant_key(transactions).to_numpy(object)
    events = count_events(keys, times, labels)
    counts = counts_at(events, keys, times - label_delay_micros(label_delay))
    return features_from_counts(counts, transactions.index)


@dataclass(frozen=True)
class MerchantSnapshot:
    """Count events compacted at ``start_us`` (= as_of - label_delay), valid until ``end_us``.

    ``events`` has COUNT_EVENT_COLUMNS: one base row per merchant and non-zero counter at
    start_us, then the events in (start_us, end_us]. Small and picklable (broadcast it).
    """

    events: pd.DataFrame
    as_of_us: int
    label_delay_us: int
    start_us: int
    end_us: int

    def __len__(self) -> int:
        return len(self.events)

    def counts_at(self, keys, e_us: np.ndarray) -> np.ndarray:
        """:func:`counts_at` of the snapshot's events for merchant ``keys`` at times ``e_us``
        (within [start_us, end_us]), from an index built once per snapshot: a query costs a
        dict look-up and a binary search, not a sort of the whole snapshot. Integer sums of the
        same events: equal to :func:`counts_at` (a unit test compares them)."""
        index = self.__dict__.get("_index")
        if index is None:
            index = _SnapshotIndex(self.events, self.start_us, self.end_us)
            self.__dict__["_index"] = index  # frozen: set once, beside the fields (not pickled)
        if not index.exact:  # an event outside [start, end]: never made by _compact
            return counts_at(self.events, keys, e_us)
        return index.counts_at(keys, e_us)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_index", None)
        return state


class _SnapshotIndex:
    """The snapshot's count events sorted by (merchant, counter, time) with running sums per
    (merchant, counter), on one int64 axis: (merchant code x N_COUNTERS + counter) x span + time
    - start. Every event time lies in [start, end], so the axis never overflows for fewer than
    2^63 / (span x N_COUNTERS) merchants (millions, for a snapshot valid for minutes)."""

    def __init__(self, events: pd.DataFrame, start_us: int, end_us: int):
        self.start_us, self.span = int(start_us), int(end_us) - int(start_us) + 1
        codes, merchants = pd.factorize(events["merchant_key"].to_numpy(object))
        self.code_of = {key: code for code, key in enumerate(merchants.tolist())}
        time_us = events["time_us"].to_numpy("int64")
        self.exact = not len(time_us) or (time_us.min() >= self.start_us
                                          and time_us.max() <= self.start_us + self.span - 1)
        time_us = np.clip(time_us, self.start_us, self.start_us + self.span - 1)
        segment = codes.astype("int64") * N_COUNTERS + events["counter"].to_numpy("int64")
        axis = segment * self.span + (time_us - self.start_us)
        order = np.argsort(axis, kind="stable")
        self.axis = axis[order]
        running = np.concatenate([[0], np.cumsum(events["delta"].to_numpy("int64")[order])])
        self.running = running  # running[i]: sum of the first i sorted deltas
        self.segment_first = np.searchsorted(self.axis, np.arange(len(merchants) * N_COUNTERS + 1) * self.span)

    def counts_at(self, keys, e_us: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=object)
        e_us = np.asarray(e_us, dtype="int64")
        out = np.zeros((len(keys), N_COUNTERS), dtype="int64")
        code = np.array([self.code_of.get(k, -1) for k in keys.tolist()], dtype="int64")
        known = np.flatnonzero(code >= 0)
        if not len(known):
            return out
        segment = code[known, None] * N_COUNTERS + np.arange(N_COUNTERS)[None, :]
        offset = np.clip(e_us[known], self.start_us, self.start_us + self.span - 1) - self.start_us
        upto = np.searchsorted(self.axis, segment * self.span + offset[:, None], side="right")
        out[known] = self.running[upto] - self.running[self.segment_first[segment]]
        return out


def _as_of_micros(value, argument: str) -> int:
    return int(epoch_micros(pd.Series([pd.Timestamp(value)]), argument=argument)[0])


def merchant_snapshot(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None,
    as_of,
    label_delay=DEFAULT_LABEL_DELAY,
    valid_for=DEFAULT_SNAPSHOT_VALIDITY,
) -> MerchantSnapshot:
    """The stream's merchant table at ``as_of`` (see the module docstring).

    Args:
        transactions: the transactions with time in [as_of - label_delay - 30 days - 1 s,
            as_of - label_delay + valid_for] at least (merchant, merchant_id, transaction_time).
        labels: output of :func:`normalize_labels` for labels known by as_of - label_delay +
            valid_for, or None.
        as_of: the snapshot time (naive means UTC).
        label_delay: as in training (timedelta or seconds).
        valid_for: how long after as_of the snapshot stays exact (>= the refresh interval).
    """
    delay, as_of_us, start, end = _snapshot_range(as_of, label_delay, valid_for)
    events = count_events(merchant_key(transactions).to_numpy(object),
                          epoch_micros(transactions["transaction_time"]), labels)
    time_us = events["time_us"].to_numpy("int64")
    base = events[time_us <= start].groupby(["merchant_key", "counter"], sort=True)["delta"].sum().reset_index()
    return _compact(base, events, as_of_us, delay, start, end)


def snapshot_from_base(base: pd.DataFrame, transactions: pd.DataFrame, labels: pd.DataFrame | None, as_of,
                       label_delay=DEFAULT_LABEL_DELAY, valid_for=DEFAULT_SNAPSHOT_VALIDITY) -> MerchantSnapshot:
    """:func:`merchant_snapshot`'s result from its two parts, without the whole window's rows.

    Args:
        base: each merchant's count at as_of - label_delay (columns merchant_key, counter, delta):
            the sum of the count events at or before it, i.e. the transactions with time in
            [e - W, e) and the fraud labels whose latest-label span holds e (computed by the
            caller, e.g. in PostgreSQL by streaming.merchant_risk, tested equal to this module's).
        transactions, labels: as for :func:`merchant_snapshot`, but only (at least) the
            transactions with a count event in (as_of - label_delay, + valid_for] with ALL their
            known labels: times in [e, e + valid_for) or [e - W, e - W + valid_for) for a window
            W, or a label known in that range. Extra rows are harmless (their events are dropped).
    """
    delay, as_of_us, start, end = _snapshot_range(as_of, label_delay, valid_for)
    events = count_events(merchant_key(transactions).to_numpy(object),
                          epoch_micros(transactions["transaction_time"]), labels)
    base = base.groupby(["merchant_key", "counter"], sort=True)["delta"].sum().reset_index()
    return _compact(base, events, as_of_us, delay, start, end)


def _snapshot_range(as_of, label_delay, valid_for) -> tuple[int, int, int, int]:
    """(label delay, as_of, start, end) in microseconds."""
    delay = label_delay_micros(label_delay)
    as_of_us = _as_of_micros(as_of, "as_of")
    return delay, as_of_us, as_of_us - delay, as_of_us - delay + label_delay_micros(valid_for)


def _compact(base: pd.DataFrame, events: pd.DataFrame, as_of_us: int, delay: int, start: int,
             end: int) -> MerchantSnapshot:
    """The snapshot of non-zero ``base`` counts (sorted by merchant and counter) at start, then
    the ``events`` in (start, end]."""
    base = base[base["delta"] != 0].assign(time_us=start)
    base = base.astype({"counter": "int64", "delta": "int64", "time_us": "int64"})[COUNT_EVENT_COLUMNS]
    time_us = events["time_us"].to_numpy("int64")
    upcoming = events[(time_us > start) & (time_us <= end)][COUNT_EVENT_COLUMNS]
    compact = pd.concat([base, upcoming], ignore_index=True)
    return MerchantSnapshot(compact, as_of_us, delay, start, end)


def snapshot_merchant_features(transactions: pd.DataFrame, snapshot: MerchantSnapshot | None) -> pd.DataFrame:
    """MERCHANT_FEATURES of each transaction from a :func:`merchant_snapshot` (the stream's path).

    Each transaction's window end t - label_delay is clamped to the snapshot's validity range;
    with no snapshot (None: the job has not read one yet) every count is 0 and every rate the prior.
    """
    return pd.DataFrame(snapshot_merchant_columns(transactions, snapshot), index=transactions.index)[MERCHANT_FEATURES]


def snapshot_merchant_columns(transactions: pd.DataFrame, snapshot: MerchantSnapshot | None,
                              time_us: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`snapshot_merchant_features` as arrays by name (``time_us``: the transactions'
    epoch microseconds when the caller has them)."""
    if snapshot is None or len(transactions) == 0:
        return columns_from_counts(np.zeros((len(transactions), N_COUNTERS), "int64"))
    time_us = time_us if time_us is not None else epoch_micros(transactions["transaction_time"])
    e_us = np.clip(time_us - snapshot.label_delay_us, snapshot.start_us, snapshot.end_us)
    return columns_from_counts(snapshot.counts_at(merchant_key(transactions).to_numpy(object), e_us))
