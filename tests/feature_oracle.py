"""Per-user reference implementation of the user features, kept as a TEST ORACLE.

The product computes user features from the online feature store (features.online), all users
of a micro-batch in one vectorised pass. This module keeps the former per-user streaming step
(a user's bounded state plus its new events -> features and the next state) for tests that
check the shared core (features.user_state.window_features) user by user and chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.definition import LONGEST_WINDOW_SECONDS, SEEN_HORIZON_SECONDS
from features.stateless import MICROS_PER_SECOND
from features.user_state import SEEN_KINDS, USER_FEATURES, _empty, event_arrays, window_features

# Bounds of the per-user state (pathological users only; normal users never reach them).
MAX_SEEN_ITEMS = 256
MAX_HISTORY_EVENTS = 5_000
_SEEN_HORIZON_US = SEEN_HORIZON_SECONDS * MICROS_PER_SECOND
_LONGEST_WINDOW_US = LONGEST_WINDOW_SECONDS * MICROS_PER_SECOND
_NO_TIME = np.iinfo(np.int64).min


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
