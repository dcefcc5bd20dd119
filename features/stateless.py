"""Features computed from one transaction alone, and the input normalisation both paths share.

Pure pandas/numpy; used by features.batch (training) and features.stream (inside the stateful
processor), so a transaction gets the same stateless values on both paths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definition import (
    CATEGORICAL_SOURCE_COLUMNS,
    NIGHT_HOURS,
    OPTIONAL_INPUT_COLUMNS,
    REQUIRED_INPUT_COLUMNS,
    UNKNOWN_CATEGORY,
)

MICROS_PER_SECOND = 1_000_000
MICROS_PER_HOUR = 3_600 * MICROS_PER_SECOND
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
_DIRECT_ROWS = 32  # map_distinct converts up to this many strings one by one (same values)


def check_input_columns(frame: pd.DataFrame, argument: str = "transactions") -> None:
    """Raise ValueError naming the required raw columns missing from ``frame``."""
    missing = [name for name in REQUIRED_INPUT_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{argument} is missing required column(s) {missing}; has {list(frame.columns)}")


def with_optional_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with absent optional raw columns added as all-missing (never mutates)."""
    absent = [name for name in OPTIONAL_INPUT_COLUMNS if name not in frame.columns]
    if not absent:
        return frame
    return frame.assign(**{name: pd.Series(None, index=frame.index, dtype=object) for name in absent})


def epoch_micros(times: pd.Series, argument: str = "transaction_time") -> np.ndarray:
    """Convert timestamps (tz-aware, naive meaning UTC, or ISO strings) to int64 microseconds.

    Raises:
        ValueError: a value is missing or cannot be parsed, naming ``argument``.
    """
    if times.isna().any():
        raise ValueError(f"{argument} has {int(times.isna().sum())} missing value(s)")
    if not (isinstance(times.dtype, pd.DatetimeTZDtype) or np.issubdtype(times.dtype, np.datetime64)):
        try:
            times = pd.to_datetime(times, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{argument} has values that are not timestamps: {exc}") from exc
    # asi8 is epoch time in UTC for tz-aware values and reads naive values as UTC.
    return pd.DatetimeIndex(times).as_unit("us").asi8.copy()


def merchant_key(frame: pd.DataFrame) -> pd.Series:
    """Identity of the merchant: merchant_id when present, else the merchant name.

    Used for the merchant fraud rate and the user's "new merchant" flag; never a feature itself.
    The Spark twin is features.spark_columns.merchant_key_column (a test keeps them equal).
    """
    names = frame["merchant"].to_numpy(object)
    if "merchant_id" not in frame.columns:
        return pd.Series(names, index=frame.index, dtype=object)
    ids = frame["merchant_id"].to_numpy(object)
    return pd.Series(np.where(pd.isna(ids), names, ids), index=frame.index, dtype=object)


def map_distinct(values: pd.Series, convert) -> np.ndarray:
    """``convert`` applied to each distinct value once (missing values included), as an object array."""
    raw = values.to_numpy(object)
    if len(raw) <= _DIRECT_ROWS and all(type(v) is str for v in raw.tolist()):
        # a few strings (a decision, a small batch): converting each costs less than factorizing
        out = np.empty(len(raw), dtype=object)
        out[:] = [convert(v) for v in raw.tolist()]
        return out
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    converted = np.array([convert(v) for v in uniques] + [convert(None)], dtype=object)
    return converted[codes]  # code -1 (missing) picks the last entry


def _category(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return UNKNOWN_CATEGORY
    return str(value)


def categorical_value(values: pd.Series) -> pd.Series:
    """Categorical values as strings; missing or blank becomes UNKNOWN_CATEGORY."""
    return pd.Series(map_distinct(values, _category), index=values.index, dtype=object)


def stateless_features(frame: pd.DataFrame, time_us: np.ndarray) -> pd.DataFrame:
    """Stateless features of each row (same index as ``frame``).

    Args:
        frame: raw transactions (required columns present; optional ones may be absent).
        time_us: transaction_time of each row as epoch microseconds (see :func:`epoch_micros`).
    """
    return pd.DataFrame(stateless_columns(frame, time_us), index=frame.index)


def stateless_columns(frame: pd.DataFrame, time_us: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`stateless_features` as arrays by name (no frame: the streaming path builds one for all)."""
    amount = pd.to_numeric(frame["amount"], errors="raise").astype("float64").to_numpy()
    hour = (time_us // MICROS_PER_HOUR) % 24
    weekday = (time_us // MICROS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    columns: dict[str, object] = {
        "amount": amount,
        "log_amount": np.log1p(amount),
        "hour": hour.astype("float64"),
        "is_night": np.isin(hour, list(NIGHT_HOURS)).astype("float64"),
        "is_weekend": (weekday >= 5).astype("float64"),
    }
    full = with_optional_columns(frame)
    for feature, source in CATEGORICAL_SOURCE_COLUMNS.items():
        columns[feature] = map_distinct(full[source], _category)
    return columns
