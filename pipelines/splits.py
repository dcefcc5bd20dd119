"""Out-of-time splits: train on the past, test on a later period after a gap. Never random.

Periods are half-open intervals [start, end) in UTC on ``transaction_time``::

    history_start ... train_start ... validation_start ... train_end <gap> test_start ... test_end
    |-- warm-up --|------- fit -------|--- validation ---|          |------- test -------|

* warm-up: rows that only feed the stateful features (30-day windows need a past);
* fit: the estimator learns on these rows;
* validation: the decision threshold is chosen here (end of the training period);
* gap: ``gap_days`` between training and test, so late labels and feature windows of the
  training period cannot leak into the test;
* test: the honest out-of-time numbers.

Features are computed on the full history first and sliced afterwards (see :func:`slice_period`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

TIME_COLUMN = "transaction_time"
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_VALIDATION_FRACTION = 0.2
DEFAULT_WARMUP_DAYS = 7.0
MAX_WARMUP_SHARE = 0.25


@dataclass(frozen=True)
class TimeSplit:
    """Boundaries of the periods (UTC timestamps; each period is [start, end))."""

    history_start: pd.Timestamp
    train_start: pd.Timestamp
    validation_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def as_params(self) -> dict[str, str]:
        """ISO strings, for MLflow params and reports."""
        return {name: value.isoformat() for name, value in self.__dict__.items()}


def parse_time(value, argument: str) -> pd.Timestamp | None:
    """A UTC Timestamp from an ISO string or timestamp; ``""``/None gives None.

    Raises:
        ValueError: naming ``argument`` when the value cannot be parsed.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{argument}={value!r} is not an ISO date or timestamp") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def event_times(frame: pd.DataFrame, column: str = TIME_COLUMN) -> pd.Series:
    """``frame[column]`` as UTC timestamps (naive means UTC); KeyError naming the column."""
    if column not in frame.columns:
        raise KeyError(f"data lacks the time column {column!r}")
    return pd.to_datetime(frame[column], utc=True, format="ISO8601")


def derive_time_split(
    times: pd.Series,
    train_end=None,
    test_start=None,
    test_end=None,
    gap_days: float = 2.0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    warmup_days: float | None = None,
) -> TimeSplit:
    """The periods for ``times``; explicit boundaries win, the rest are derived.

    Defaults: test_end = midnight after the last event; test_start = test_end minus
    ``test_fraction`` of the time range (on a day boundary); train_end = test_start minus
    ``gap_days``; train_start = first event plus ``warmup_days`` (default 7, at most a quarter
    of the training range); validation = the last ``validation_fraction`` of training.

    Raises:
        ValueError: naming the argument when the periods are out of order or empty.
    """
    times = pd.to_datetime(times, utc=True)
    if times.empty:
        raise ValueError("data holds no transactions")
    if gap_days < 0:
        raise ValueError(f"gap_days={gap_days} must be >= 0")
    first, last = times.min(), times.max()
    gap = pd.Timedelta(days=gap_days)
    explicit_train_end = parse_time(train_end, "train_end")
    end = _or_default(parse_time(test_end, "test_end"), last.floor("D") + pd.Timedelta(days=1))
    start = parse_time(test_start, "test_start")
    if start is None:
        start = (end - (end - first) * test_fraction).floor("D")
        if explicit_train_end is not None:
            start = max(start, explicit_train_end + gap)
    fit_end = _or_default(explicit_train_end, start - gap)
    _check_order([("history start (first event)", first), ("train_end", fit_end)])
    _check_order([("train_end", fit_end), ("test_start", start)], allow_equal=True)
    _check_order([("test_start", start), ("test_end", end)])
    warmup = pd.Timedelta(days=DEFAULT_WARMUP_DAYS if warmup_days is None else warmup_days)
    warmup = min(warmup, (fit_end - first) * MAX_WARMUP_SHARE) if warmup_days is None else warmup
    fit_start = (first + warmup).ceil("h")
    validation_start = (fit_end - (fit_end - fit_start) * validation_fraction).floor("h")
    _check_order([("train_start", fit_start), ("validation_start", validation_start), ("train_end", fit_end)])
    return TimeSplit(first, fit_start, validation_start, fit_end, start, end)


def _or_default(value: pd.Timestamp | None, default: pd.Timestamp) -> pd.Timestamp:
    return default if value is None else value


def _check_order(points: list[tuple[str, pd.Timestamp]], allow_equal: bool = False) -> None:
    for (name_a, a), (name_b, b) in zip(points, points[1:], strict=False):
        if a > b or (a == b and not allow_equal):
            word = "not after" if allow_equal else "before"
            raise ValueError(f"{name_a} ({a.isoformat()}) must be {word} {name_b} ({b.isoformat()})")


def slice_period(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                 column: str = TIME_COLUMN) -> pd.DataFrame:
    """The rows with start <= time < end (a copy; ``frame`` is not modified)."""
    times = event_times(frame, column)
    return frame.loc[(times >= start) & (times < end)].copy()


@dataclass(frozen=True)
class SplitFrames:
    """The featurized rows of each period."""

    fit: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def split_frames(featurized: pd.DataFrame, split: TimeSplit, label_column: str = "is_fraud") -> SplitFrames:
    """Slice featurized history into fit / validation / test (warm-up and gap rows dropped).

    Raises:
        ValueError: naming the period that holds no rows or no fraud.
    """
    frames = SplitFrames(
        fit=slice_period(featurized, split.train_start, split.validation_start),
        validation=slice_period(featurized, split.validation_start, split.train_end),
        test=slice_period(featurized, split.test_start, split.test_end),
    )
    for name in ("fit", "validation", "test"):
        frame = getattr(frames, name)
        if frame.empty:
            raise ValueError(f"the {name} period of {split.as_params()} holds no transactions")
        if label_column in frame.columns and int(frame[label_column].sum()) == 0:
            raise ValueError(f"the {name} period of {split.as_params()} holds no fraud; widen it or add data")
    return frames
