"""Per-merchant features from late-arriving labels, point-in-time correct.

A label (transaction_id, is_fraud, labeled_at) becomes usable at labeled_at + label_delay. A
transaction at time t sees exactly the labels usable at or before t: training does a
point-in-time as-of lookup per transaction (:func:`merchant_features_point_in_time`); the
streaming job joins a snapshot taken at its refresh time (:func:`merchant_risk_snapshot`).
Both count labels with :func:`label_count_events` and turn counts into a rate with
:func:`smoothed_fraud_rate`, so the same labels give the same values on both paths.

When one transaction has several labels (e.g. analyst then chargeback), the latest usable one
counts; the transaction counts once.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.definition import (
    DEFAULT_LABEL_DELAY_SECONDS,
    MERCHANT_PRIOR_FRAUD_RATE,
    MERCHANT_PRIOR_STRENGTH,
)
from features.stateless import MICROS_PER_SECOND, epoch_micros, map_distinct, merchant_key
from features.user_state import count_at_or_before

MERCHANT_FEATURES = ["merchant_fraud_rate", "merchant_label_count"]
LABEL_TIME_COLUMNS = ("labeled_at", "label_time")
SNAPSHOT_COLUMNS = ["merchant_key", "merchant_label_count", "merchant_fraud_count", "merchant_fraud_rate"]
DEFAULT_LABEL_DELAY = dt.timedelta(seconds=DEFAULT_LABEL_DELAY_SECONDS)


def smoothed_fraud_rate(frauds, labels) -> np.ndarray:
    """Bayesian-smoothed fraud rate (frauds + strength * prior) / (labels + strength).

    With no labels it is the prior (MERCHANT_PRIOR_FRAUD_RATE).
    """
    frauds = np.asarray(frauds, dtype="float64")
    labels = np.asarray(labels, dtype="float64")
    return (frauds + MERCHANT_PRIOR_STRENGTH * MERCHANT_PRIOR_FRAUD_RATE) / (labels + MERCHANT_PRIOR_STRENGTH)


def label_delay_micros(label_delay) -> int:
    """A delay given as timedelta, pandas Timedelta or seconds, in microseconds (>= 0)."""
    if isinstance(label_delay, dt.timedelta | pd.Timedelta):
        micros = int(pd.Timedelta(label_delay).value // 1_000)
    elif isinstance(label_delay, int | float) and np.isfinite(label_delay):
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


def normalize_labels(labels: pd.DataFrame, transactions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Labels as (transaction_id, merchant_key, is_fraud 0/1, labeled_us), known labels only.

    The merchant comes from the labels' own merchant/merchant_id columns when present, else from
    ``transactions`` by transaction_id. Rows without a label time or is_fraud are not known yet
    and are left out; a label whose transaction (and so merchant) is unknown raises.

    Raises:
        ValueError: a required column is missing, is_fraud is not 0/1, or a merchant is unknown.
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
    if "merchant" in known.columns:
        keys = merchant_key(known)
    elif transactions is not None:
        lookup = pd.Series(
            merchant_key(transactions).to_numpy(), index=transactions["transaction_id"].astype(str)
        )
        lookup = lookup[~lookup.index.duplicated()]
        keys = known["transaction_id"].astype(str).map(lookup)
        if keys.isna().any():
            missing = known.loc[keys.isna(), "transaction_id"].head(5).tolist()
            raise ValueError(
                f"labels refer to {int(keys.isna().sum())} transaction(s) not in transactions, e.g. {missing}"
            )
    else:
        raise ValueError("labels has no merchant/merchant_id columns; pass the transactions they refer to")
    return pd.DataFrame(
        {
            "transaction_id": known["transaction_id"].astype(str).to_numpy(),
            "merchant_key": keys.to_numpy(object),
            "is_fraud": is_fraud.astype("int64").to_numpy(),
            "labeled_us": epoch_micros(known[time_column], argument=f"labels.{time_column}"),
        }
    )


def label_count_events(labels: pd.DataFrame, label_delay=DEFAULT_LABEL_DELAY) -> pd.DataFrame:
    """Changes of each merchant's (label count, fraud count), each at the time it becomes usable.

    Args:
        labels: output of :func:`normalize_labels`.
        label_delay: how long after labeled_at a label becomes usable.

    Returns:
        DataFrame (merchant_key, available_us, d_labels, d_frauds), grouped by merchant, in time
        order within a merchant.
    """
    transaction, _ = pd.factorize(labels["transaction_id"].to_numpy(object))
    is_fraud = labels["is_fraud"].to_numpy("int64")
    order = np.lexsort((is_fraud, labels["labeled_us"].to_numpy("int64"), transaction))
    transaction, is_fraud = transaction[order], is_fraud[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = transaction[1:] != transaction[:-1]
    previous_fraud = np.where(first, 0, np.concatenate([[0], is_fraud[:-1]]))
    merchant, _ = pd.factorize(labels["merchant_key"].to_numpy(object)[order])
    available = labels["labeled_us"].to_numpy("int64")[order] + label_delay_micros(label_delay)
    by_merchant = np.lexsort((available, merchant))
    return pd.DataFrame(
        {
            "merchant_key": labels["merchant_key"].to_numpy(object)[order][by_merchant],
            "available_us": available[by_merchant],
            "d_labels": first.astype("int64")[by_merchant],
            "d_frauds": (is_fraud - previous_fraud)[by_merchant],
        }
    )


def merchant_counts_at(events: pd.DataFrame, merchant_keys, times_us) -> tuple[np.ndarray, np.ndarray]:
    """(label count, fraud count) of each merchant from the events usable at or before each time."""
    keys = pd.Series(np.asarray(merchant_keys, dtype=object))
    codes, uniques = pd.factorize(pd.concat([events["merchant_key"], keys], ignore_index=True))
    event_codes, query_codes = codes[: len(events)], codes[len(events) :]
    order = np.lexsort((events["available_us"].to_numpy("int64"), event_codes))
    sorted_codes = event_codes[order]
    label_prefix = np.concatenate([[0], np.cumsum(events["d_labels"].to_numpy("int64")[order])])
    fraud_prefix = np.concatenate([[0], np.cumsum(events["d_frauds"].to_numpy("int64")[order])])
    upto = count_at_or_before(
        sorted_codes, events["available_us"].to_numpy("int64")[order], query_codes, times_us
    )
    start = np.searchsorted(sorted_codes, query_codes, side="left")
    return label_prefix[upto] - label_prefix[start], fraud_prefix[upto] - fraud_prefix[start]


def merchant_features_point_in_time(
    transactions: pd.DataFrame, labels: pd.DataFrame | None, label_delay=DEFAULT_LABEL_DELAY
) -> pd.DataFrame:
    """MERCHANT_FEATURES of each transaction from the labels usable at its transaction_time.

    Args:
        transactions: raw transactions (merchant, merchant_id optional, transaction_time).
        labels: output of :func:`normalize_labels`, or None (every merchant at the prior).
        label_delay: how long after labeled_at a label becomes usable.
    """
    n = len(transactions)
    if labels is None or len(labels) == 0:
        label_count, fraud_count = np.zeros(n), np.zeros(n)
    else:
        events = label_count_events(labels, label_delay)
        times = epoch_micros(transactions["transaction_time"])
        label_count, fraud_count = merchant_counts_at(
            events, merchant_key(transactions).to_numpy(object), times
        )
    return pd.DataFrame(
        {
            "merchant_fraud_rate": smoothed_fraud_rate(fraud_count, label_count),
            "merchant_label_count": np.asarray(label_count, dtype="float64"),
        },
        index=transactions.index,
    )


def merchant_risk_snapshot(labels: pd.DataFrame, as_of, label_delay=DEFAULT_LABEL_DELAY) -> pd.DataFrame:
    """Every labelled merchant's counts and smoothed rate from the labels usable at ``as_of``.

    The streaming job refreshes this table on an interval and joins it on merchant_key
    (features.spark_columns.attach_merchant_risk); merchants absent from it are at the prior.

    Args:
        labels: output of :func:`normalize_labels` (labels joined to their merchant).
        as_of: the snapshot time (timestamp; naive means UTC).
        label_delay: how long after labeled_at a label becomes usable.

    Returns:
        DataFrame with SNAPSHOT_COLUMNS, one row per merchant, sorted by merchant_key.
    """
    as_of_us = int(epoch_micros(pd.Series([as_of]), argument="as_of")[0])
    events = label_count_events(labels, label_delay)
    usable = events[events["available_us"] <= as_of_us]
    counts = usable.groupby("merchant_key", sort=True)[["d_labels", "d_frauds"]].sum()
    counts = counts[counts["d_labels"] > 0]
    return pd.DataFrame(
        {
            "merchant_key": counts.index.to_numpy(object),
            "merchant_label_count": counts["d_labels"].to_numpy("float64"),
            "merchant_fraud_count": counts["d_frauds"].to_numpy("float64"),
            "merchant_fraud_rate": smoothed_fraud_rate(counts["d_frauds"], counts["d_labels"]),
        }
    )
