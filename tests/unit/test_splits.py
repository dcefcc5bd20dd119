"""Out-of-time splits: order, gap, defaults, and named errors."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.splits import derive_time_split, parse_time, slice_period, split_frames

pytestmark = pytest.mark.unit


def _times(days: int = 30) -> pd.Series:
    return pd.Series(pd.date_range("2024-01-01", periods=days * 24, freq="h", tz="UTC"))


def test_default_split_is_ordered_with_the_gap_and_a_test_tail():
    split = derive_time_split(_times(30), gap_days=2)
    assert split.history_start < split.train_start < split.validation_start < split.train_end
    assert split.test_start - split.train_end == pd.Timedelta(days=2)
    assert split.test_end == pd.Timestamp("2024-01-31", tz="UTC")
    assert split.test_start == pd.Timestamp("2024-01-25", tz="UTC")  # last 20% of 30 days, on a day
    # warm-up: 7 days, at most a quarter of the 22 days before train_end
    assert split.train_start == pd.Timestamp("2024-01-06T12:00", tz="UTC")


def test_explicit_boundaries_win_and_train_end_follows_test_start_minus_gap():
    split = derive_time_split(_times(30), test_start="2024-01-20", test_end="2024-01-25", gap_days=1.5)
    assert split.test_start == pd.Timestamp("2024-01-20", tz="UTC")
    assert split.test_end == pd.Timestamp("2024-01-25", tz="UTC")
    assert split.train_end == pd.Timestamp("2024-01-18T12:00", tz="UTC")


def test_explicit_train_end_moves_the_default_test_start_past_the_gap():
    split = derive_time_split(_times(30), train_end="2024-01-25", gap_days=2)
    assert split.test_start == pd.Timestamp("2024-01-27", tz="UTC")


def test_warm_up_is_capped_on_short_histories():
    split = derive_time_split(_times(8), gap_days=0)
    assert split.train_start - split.history_start <= (split.train_end - split.history_start) * 0.25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_end": "2024-01-26", "test_start": "2024-01-25"}, "train_end .* must be not after test_start"),
        ({"test_start": "2024-01-25", "test_end": "2024-01-20"}, "test_start .* must be before test_end"),
        ({"test_start": "yesterday-ish"}, "test_start='yesterday-ish'"),
        ({"gap_days": -1}, "gap_days"),
    ],
)
def test_inconsistent_arguments_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        derive_time_split(_times(30), **kwargs)


def test_parse_time_treats_naive_as_utc_and_empty_as_none():
    assert parse_time("2024-01-02T03:00", "x") == pd.Timestamp("2024-01-02T03:00", tz="UTC")
    assert parse_time("2024-01-02T03:00+02:00", "x") == pd.Timestamp("2024-01-02T01:00", tz="UTC")
    assert parse_time("", "x") is None and parse_time(None, "x") is None


def test_split_frames_are_disjoint_and_drop_warm_up_and_gap_rows():
    times = _times(30)
    frame = pd.DataFrame({"transaction_time": times.dt.strftime("%Y-%m-%dT%H:%M:%S"), "is_fraud": 1})
    split = derive_time_split(times, gap_days=2)
    frames = split_frames(frame, split)
    fit_t, val_t, test_t = (pd.to_datetime(f.transaction_time, utc=True) for f in (frames.fit, frames.validation, frames.test))
    assert fit_t.max() < val_t.min() and val_t.max() < split.train_end <= test_t.min() - pd.Timedelta(days=2)
    assert fit_t.min() >= split.train_start
    assert len(frames.fit) + len(frames.validation) + len(frames.test) < len(frame)


def test_split_frames_name_a_period_without_fraud():
    times = _times(30)
    frame = pd.DataFrame({"transaction_time": times, "is_fraud": 0})
    with pytest.raises(ValueError, match="fit period .* holds no fraud"):
        split_frames(frame, derive_time_split(times))


def test_slice_period_does_not_modify_its_input():
    frame = pd.DataFrame({"transaction_time": _times(2)})
    before = frame.copy()
    out = slice_period(frame, pd.Timestamp("2024-01-01T05:00Z"), pd.Timestamp("2024-01-01T07:00Z"))
    assert len(out) == 2
    pd.testing.assert_frame_equal(frame, before)


def test_missing_time_column_is_named():
    with pytest.raises(KeyError, match="transaction_time"):
        slice_period(pd.DataFrame({"t": [1]}), pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC"))
