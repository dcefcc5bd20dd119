"""Batch feature computation for training: the whole history in one vectorised pass.

Reads a pandas DataFrame of raw transactions (the message contract's fields, optionally
is_fraud/label_time) and labels; returns the same rows with FEATURE_COLUMNS added. The per-user
part is features.user_state.window_features, the very core the streaming path calls, and the
merchant part features.merchant, so training replays history exactly as the stream computes it.

Data from elsewhere: :func:`clean_transactions` drops every row the message contract would
quarantine (and duplicate transaction_ids after the first), normalises times (naive = UTC,
aware converted, ISO strings parsed) and returns a :class:`RowReport` (count and reason of
every dropped row) for the run and the GE report; :func:`compute_training_features` chains it
with compute_features and never raises on bad rows (only on an unusable table, e.g. a missing
required column).

Usage:
    from features.batch import compute_features, compute_training_features
    featured = compute_features(history)          # labels taken from is_fraud/label_time
    featured, report = compute_training_features(foreign_history, label_delay=7 * 86_400)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.definition import FEATURE_COLUMNS, OPTIONAL_INPUT_COLUMNS, REQUIRED_INPUT_COLUMNS
from features.merchant import DEFAULT_LABEL_DELAY, merchant_features_point_in_time, normalize_labels
from features.stateless import check_input_columns, map_distinct, stateless_features
from features.user_state import SEEN_KINDS, USER_FEATURES, event_arrays, window_features

HISTORY_LABEL_COLUMNS = ("is_fraud", "label_time")


def validate_transactions(transactions: pd.DataFrame, argument: str = "transactions") -> None:
    """Raise ValueError naming the column and the problem when the raw rows are unusable.

    Checks: required columns present; no missing transaction_id/user_id/amount/time; unique
    transaction_id; amount finite and >= 0 (zero-amount verifications are valid); no column
    already named like a feature (but amount). :func:`clean_transactions` drops such rows instead.
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
    bad = ~(np.isfinite(amount) & (amount >= 0))
    if bad.any():
        examples = transactions.loc[bad, "amount"].head(3).tolist()
        raise ValueError(
            f"{argument}.amount must be a finite number >= 0; {int(bad.sum())} row(s) are not, e.g. {examples}"
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
    """The labels to use: ``labels`` if given, else the history's own is_fraud/label_time.

    A history with is_fraud but no label_time column (data from elsewhere often has none) is
    taken as labelled when each transaction happened: with label_delay L, a label then counts
    for the transactions at least L later (the usual "labels known L after the transaction").
    """
    if labels is not None:
        return normalize_labels(labels, transactions)
    if not use_history_labels or "is_fraud" not in transactions.columns:
        return None
    keep = ["transaction_id", "merchant", "transaction_time", "is_fraud"]
    keep += [c for c in ("merchant_id", "label_time") if c in transactions.columns]
    history = transactions[keep]
    if "label_time" not in history.columns:
        history = history.assign(label_time=history["transaction_time"])
    return normalize_labels(history)


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
            None: use the transactions' own is_fraud and label_time columns (rows without
            label_time were never labelled; no label_time column: labelled when they happened,
            see :func:`known_labels`) when ``use_history_labels`` is true.
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


# --- data from elsewhere ------------------------------------------------------------------------
@dataclass
class RowReport:
    """What :func:`clean_transactions` kept and dropped (log it to the run and the GE report).

    Attributes:
        rows_in: rows received; rows_out: rows kept.
        dropped: reason -> number of rows dropped for it (first failing check of each row).
        examples: reason -> up to 3 transaction_ids (as strings) of dropped rows.
        notes: counts of repairs that kept the row (e.g. naive timestamps read as UTC).
    """

    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return self.rows_in - self.rows_out

    def as_dict(self) -> dict:
        """Plain JSON-able dict (for mlflow.log_dict and the GE report)."""
        return {"rows_in": self.rows_in, "rows_out": self.rows_out, "rows_dropped": self.rows_dropped,
                "dropped": dict(self.dropped), "examples": {k: list(v) for k, v in self.examples.items()},
                "notes": dict(self.notes)}


def _as_text(value):
    """Strings stripped; integral numbers (ids read from CSV) as digits; None if missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer) or (isinstance(value, float | np.floating) and float(value).is_integer()):
        return str(int(value))
    return str(value).strip()


def _string_reason(name: str, value) -> str | None:
    from fraudops.contract.messages import _UNSTORABLE, CODE_FIELDS, MAX_STRING_LENGTH

    if value is None or value == "":
        return f"missing_field:{name}" if name in REQUIRED_INPUT_COLUMNS else None
    if len(value) > MAX_STRING_LENGTH:
        return f"oversized_field:{name}"
    if _UNSTORABLE.search(value):
        return f"bad_characters:{name}"
    if name in CODE_FIELDS and value not in CODE_FIELDS[name]:
        return {"currency": "unknown_currency", "country": "unknown_country"}.get(name, "bad_transaction_type")
    return None


def utc_times(values: pd.Series) -> pd.Series:
    """Timestamps as datetime64[ns, UTC]: naive means UTC, aware converted, ISO strings parsed;
    NaT where a value is missing or unparseable."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    numeric = values.map(lambda v: isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool))
    parsed = pd.to_datetime(values.where(~numeric), utc=True, format="ISO8601", errors="coerce")
    return parsed.astype("datetime64[ns, UTC]")


def _row_reasons(frame: pd.DataFrame) -> tuple[pd.Series, dict[str, pd.Series]]:
    """The first failing contract check of each row (None if valid) and the cleaned columns."""
    from fraudops.contract.messages import MAX_AMOUNT, MIN_TRANSACTION_TIME

    reasons = pd.Series(None, index=frame.index, dtype=object)
    cleaned: dict[str, pd.Series] = {}

    def flag(mask, reason):
        reasons[mask & reasons.isna()] = reason

    for name in [*REQUIRED_INPUT_COLUMNS, *OPTIONAL_INPUT_COLUMNS]:
        if name in ("amount", "transaction_time") or name not in frame.columns:
            continue
        text = pd.Series(map_distinct(frame[name], _as_text), index=frame.index, dtype=object)
        cleaned[name] = text
        why = pd.Series(map_distinct(text, lambda v, n=name: _string_reason(n, v)), index=frame.index, dtype=object)
        reasons = reasons.where(reasons.notna(), why)
    raw_amount = frame["amount"]
    is_number = raw_amount.map(lambda v: isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool))
    amount = pd.to_numeric(raw_amount.where(is_number), errors="coerce").astype("float64")
    flag(raw_amount.isna(), "missing_field:amount")
    flag(~is_number, "wrong_type:amount")
    flag(~np.isfinite(amount), "non_finite:amount")
    flag(amount < 0, "negative:amount")
    flag(amount > MAX_AMOUNT, "absurd_value:amount")
    cleaned["amount"] = amount
    times = utc_times(frame["transaction_time"])
    flag(frame["transaction_time"].isna(), "missing_field:transaction_time")
    flag(times.isna(), "unparseable_time")
    flag((times < MIN_TRANSACTION_TIME) | (times > pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)),
         "time_out_of_range")
    cleaned["transaction_time"] = times
    return reasons, cleaned


def _label_columns(frame: pd.DataFrame, reasons: pd.Series, notes: dict) -> dict[str, pd.Series]:
    """Cleaned is_fraud / label_time when present; rows with an unusable is_fraud are dropped."""
    out: dict[str, pd.Series] = {}
    if "is_fraud" in frame.columns:
        words = {"true": 1, "false": 0, "1": 1, "0": 0, "yes": 1, "no": 0}
        value = frame["is_fraud"].map(
            lambda v: words.get(v.strip().lower()) if isinstance(v, str) else _number_label(v))
        reasons[value.isna() & reasons.isna()] = "bad_is_fraud"
        out["is_fraud"] = value
    if "label_time" in frame.columns:
        times = utc_times(frame["label_time"])
        unusable = times.isna() & frame["label_time"].notna()
        if unusable.any():
            notes["unparseable_label_time_as_unlabelled"] = int(unusable.sum())
        out["label_time"] = times
    return out


def _number_label(value):
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return int(value)
    return None


def clean_transactions(transactions: pd.DataFrame, argument: str = "transactions") -> tuple[pd.DataFrame, RowReport]:
    """Keep the rows the message contract accepts; drop the others with a count and a reason.

    Rows keep their index and order; kept rows have stripped strings (ids read as numbers become
    digits), amount as float, transaction_time (and label_time) as datetime64[ns, UTC] (naive
    means UTC), is_fraud as int 0/1 when present. Absent optional columns stay absent (the
    features treat them as missing). Duplicate transaction_ids: the first valid row is kept,
    later ones are dropped as ``duplicate_transaction_id``. Unknown columns are kept untouched.

    Raises:
        ValueError: only when the table itself is unusable (a required column is missing).
    """
    check_input_columns(transactions, argument)
    notes: dict[str, int] = {}
    reasons, cleaned = _row_reasons(transactions)
    cleaned.update(_label_columns(transactions, reasons, notes))
    valid = reasons.isna()
    reasons[valid & cleaned["transaction_id"].where(valid).duplicated(keep="first")] = "duplicate_transaction_id"
    time_dtype = transactions["transaction_time"].dtype
    if not isinstance(time_dtype, pd.DatetimeTZDtype) and pd.api.types.is_datetime64_dtype(time_dtype):
        notes["naive_transaction_time_read_as_utc"] = int(valid.sum())
    kept = reasons.isna()
    out = transactions.loc[kept].assign(**{name: column[kept] for name, column in cleaned.items()})
    if "is_fraud" in out.columns:
        out["is_fraud"] = out["is_fraud"].astype("int64")
    ids = cleaned["transaction_id"].astype(str)
    dropped = reasons[~kept].value_counts().sort_index()
    report = RowReport(
        rows_in=len(transactions), rows_out=int(kept.sum()),
        dropped={str(k): int(v) for k, v in dropped.items()},
        examples={str(k): ids[reasons == k].head(3).tolist() for k in dropped.index},
        notes=notes,
    )
    return out, report


def compute_training_features(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    label_delay=DEFAULT_LABEL_DELAY,
    use_history_labels: bool = True,
) -> tuple[pd.DataFrame, RowReport]:
    """:func:`clean_transactions`, then :func:`compute_features` on the kept rows.

    Labels of dropped transactions are ignored (counted in the report's notes as
    ``labels_of_dropped_rows``). Never raises on bad rows; see compute_features for the args.

    Returns:
        (the kept rows with FEATURE_COLUMNS, the RowReport).
    """
    clean, report = clean_transactions(transactions)
    if labels is None and use_history_labels and "is_fraud" in clean.columns and "label_time" not in clean.columns:
        report.notes["labels_known_at_transaction_time"] = len(clean)  # no label_time column
    if labels is not None:
        known = labels["transaction_id"].astype(str).isin(set(clean["transaction_id"].astype(str)))
        if (~known).any():
            report.notes["labels_of_dropped_rows"] = int((~known).sum())
        labels = labels[known]
    return compute_features(clean, labels, label_delay, use_history_labels), report
