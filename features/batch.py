"""Batch feature computation for training: the whole history in one vectorised pass.

Reads a pandas DataFrame of raw transactions (the message contract's fields, optionally
is_fraud/label_time) and labels; returns the same rows with FEATURE_COLUMNS added. The per-user
part is features.user_state.window_features, the very core the streaming processor calls
through user_window_features, so training replays history exactly as the stream computes it.

Usage:
    from features.batch import compute_features
    featured = compute_features(history)          # labels taken from is_fraud/label_time
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definition import FEATURE_COLUMNS
from features.merchant import DEFAULT_LABEL_DELAY, merchant_features_point_in_time, normalize_labels
from features.stateless import check_input_columns, stateless_features
from features.user_state import SEEN_KINDS, USER_FEATURES, event_arrays, window_features

HISTORY_LABEL_COLUMNS = ("is_fraud", "label_time")


def validate_transactions(transactions: pd.DataFrame, argument: str = "transactions") -> None:
    """Raise ValueError naming the column and the problem when the raw rows are unusable.

    Checks: required columns present; no missing transaction_id/user_id/amount/time; unique
    transaction_id; amount finite and > 0; no column already named like a feature (but amount).
    """
    check_input_columns(transactions, argument)
    for name in ("transaction_id", "user_id", "amount", "transaction_time", "country"):
        missing = int(transactions[name].isna().sum())
        if missing:
            raise ValueError(f"{argument}.{name} has {missing} missing value(s)")
    duplicated = transactions["transaction_id"].astype(str).duplicated()
    if duplicated.any():
        examples = transactions.loc[duplicated, "transaction_id"].head(3).tolist()
        raise ValueError(
            f"{argument}.transaction_id has {int(duplicated.sum())} duplicate(s), e.g. {examples}"
        )
    amount = pd.to_numeric(transactions["amount"], errors="coerce")
    bad = ~(np.isfinite(amount) & (amount > 0))
    if bad.any():
        examples = transactions.loc[bad, "amount"].head(3).tolist()
        raise ValueError(
            f"{argument}.amount must be a finite number > 0; {int(bad.sum())} row(s) are not, e.g. {examples}"
        )
    clashing = [name for name in FEATURE_COLUMNS if name in transactions.columns and name != "amount"]
    if clashing:
        raise ValueError(f"{argument} already has feature column(s) {clashing}; pass raw transactions")


def user_features(transactions: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """USER_FEATURES of every row (index of ``transactions``), all users in one vectorised pass.

    ``arrays`` is ``event_arrays(transactions)`` when the caller already has it.
    """
    arrays = arrays if arrays is not None else event_arrays(transactions)
    user_code, _ = pd.factorize(transactions["user_id"].to_numpy(object))
    id_rank, _ = pd.factorize(arrays["transaction_id"], sort=True)  # ties broken by transaction_id
    order = np.lexsort((id_rank, arrays["time_us"], user_code))
    feats = window_features(
        user_code[order].astype("int64"),
        arrays["time_us"][order],
        arrays["amount"][order],
        {kind: arrays[kind][order] for kind in SEEN_KINDS},
    )
    back = np.empty(len(order), dtype="int64")
    back[order] = np.arange(len(order))
    return pd.DataFrame({name: feats[name][back] for name in USER_FEATURES}, index=transactions.index)


def known_labels(
    transactions: pd.DataFrame, labels: pd.DataFrame | None, use_history_labels: bool
) -> pd.DataFrame | None:
    """The labels to use: ``labels`` if given, else the history's own is_fraud/label_time."""
    if labels is not None:
        return normalize_labels(labels, transactions)
    if use_history_labels and all(c in transactions.columns for c in HISTORY_LABEL_COLUMNS):
        keep = ["transaction_id", "merchant", *HISTORY_LABEL_COLUMNS]
        keep += ["merchant_id"] if "merchant_id" in transactions.columns else []
        return normalize_labels(transactions[keep])
    return None


def compute_features(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    label_delay=DEFAULT_LABEL_DELAY,
    use_history_labels: bool = True,
) -> pd.DataFrame:
    """Return ``transactions`` (same rows, order, index and columns) plus FEATURE_COLUMNS.

    Args:
        transactions: raw transactions in the message contract (transaction_time tz-aware, naive
            meaning UTC, or ISO strings). Not modified.
        labels: (transaction_id, is_fraud, labeled_at or label_time[, merchant, merchant_id]).
            None: use the transactions' own is_fraud and label_time columns when both exist
            (rows without label_time were never labelled) and ``use_history_labels`` is true.
        label_delay: a label is usable for a transaction at time t when labeled_at + label_delay <= t
            (timedelta or seconds).
        use_history_labels: see ``labels``; False gives every merchant the prior rate.

    Raises:
        ValueError: bad input, naming the argument and column (see :func:`validate_transactions`).
    """
    validate_transactions(transactions)
    arrays = event_arrays(transactions)
    parts = [
        stateless_features(transactions, arrays["time_us"]),
        user_features(transactions, arrays),
        merchant_features_point_in_time(
            transactions, known_labels(transactions, labels, use_history_labels), label_delay
        ),
    ]
    features = pd.concat(parts, axis=1)[FEATURE_COLUMNS]
    out = transactions.assign(amount=features["amount"].to_numpy())
    return pd.concat([out, features.drop(columns=["amount"])], axis=1)
