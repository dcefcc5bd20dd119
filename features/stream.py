"""Streaming features: FEATURE_COLUMNS of a micro-batch's events, each AS OF its own time.

:func:`stream_features` is what the scoring job's pandas pass (streaming.scoring_pass) calls on
each micro-batch's valid events: stateless features (features.stateless), per-user features from the
users' strictly earlier events in the online feature store plus the chunk itself
(features.online, the same core as training), and merchant features from the latest merchant
risk snapshot (features.merchant). :func:`remember_events` then writes the chunk's events to the
store (idempotent), so the next chunks and micro-batches see them.

``events`` must hold every event of its users in the micro-batch: the features of an event see
the events of the same call and those already remembered, whatever their order (the scoring
pass calls it once per task, and every event of a user in a micro-batch is in one task). An
event remembered only after a later event of its user was featured is a late event (see
features.online).

Use:
    featured = stream_features(events, store, merchant_snapshot)
    remember_events(store, events)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definition import FEATURE_COLUMNS
from features.merchant import snapshot_merchant_columns
from features.online import FeatureStore, append_events, online_user_columns
from features.stateless import stateless_columns
from features.user_state import event_arrays


def stream_features(events: pd.DataFrame, store: FeatureStore,
                    merchant_snapshot: pd.DataFrame | None = None,
                    arrays: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """``events`` (amount as float) plus FEATURE_COLUMNS, same index; the store is only read.

    Args:
        events: valid raw events (message contract columns), unique transaction_id, any users,
            any order.
        store: the online feature store.
        merchant_snapshot: features.merchant.merchant_risk_snapshot output, or None (every
            merchant at the prior).
        arrays: ``features.user_state.event_arrays(events)`` when the caller has it (it hands
            the same to :func:`remember_events`: computed once per batch).
    """
    return featured_frame(events, stream_feature_columns(events, store, merchant_snapshot, arrays))


def stream_feature_columns(events: pd.DataFrame, store: FeatureStore, merchant_snapshot=None,
                           arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """:func:`stream_features`' FEATURE_COLUMNS as arrays by name (row order of ``events``)."""
    arrays = arrays if arrays is not None else event_arrays(events)
    return {**stateless_columns(events, arrays["time_us"]), **online_user_columns(store, events, arrays),
            **snapshot_merchant_columns(events, merchant_snapshot, arrays["time_us"])}


def featured_frame(events: pd.DataFrame, computed: dict[str, np.ndarray]) -> pd.DataFrame:
    """``events`` (amount as the float feature, in place) then FEATURE_COLUMNS from ``computed``:
    one frame from the columns (a frame per part, two concats and a column pick cost a one-row
    decision ~1 ms)."""
    columns = {name: computed["amount"] if name == "amount" else events[name] for name in events.columns}
    columns.update((name, computed[name]) for name in FEATURE_COLUMNS if name != "amount")
    return pd.DataFrame(columns, index=events.index)


def remember_events(store: FeatureStore, events: pd.DataFrame,
                    arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write ``events`` to the store after their features were computed (a replay adds nothing);
    ``arrays``: the ones their features were computed with, if the caller kept them."""
    append_events(store, events, arrays)
