"""Unit tests of pipelines.retrain's pure parts: the periods and the training-set assembly."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines.retrain import ORIGIN_COLUMN, TrainingData, combine, history_rows, retrain_split

pytestmark = pytest.mark.unit

HISTORY = pd.Series(pd.date_range("2025-01-01", periods=3000, freq="15min", tz="UTC"))
RECENT = pd.Series(pd.date_range("2026-06-01", periods=1000, freq="1min", tz="UTC"))


def test_split_uses_rows_not_calendar_time():
    split = retrain_split(pd.concat([HISTORY, RECENT]), RECENT, holdout_fraction=0.3, gap=timedelta(minutes=10))

    assert split.test_start == RECENT.iloc[700] and split.test_end > RECENT.iloc[-1]
    assert split.train_end == RECENT.iloc[700] - pd.Timedelta(minutes=10)
    assert HISTORY.iloc[0] < split.train_start < split.validation_start < split.train_end
    training = pd.concat([HISTORY, RECENT])
    training = training[(training >= split.train_start) & (training < split.train_end)]
    assert (training >= split.validation_start).mean() == pytest.approx(0.2, abs=0.01)


def test_split_warm_up_is_at_most_a_quarter_of_the_range():
    split = retrain_split(RECENT, RECENT, holdout_fraction=0.2, gap=timedelta(minutes=1))
    assert split.train_start - RECENT.iloc[0] <= (split.train_end - RECENT.iloc[0]) * 0.25 + pd.Timedelta(seconds=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"holdout_fraction": 0}, "holdout_fraction=0"),
    ({"holdout_fraction": 1.0}, "holdout_fraction=1.0"),
    ({"gap": timedelta(days=3000)}, "no training rows before the holdout"),
])
def test_split_errors_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        retrain_split(pd.concat([HISTORY, RECENT]), RECENT, **kwargs)


def test_split_needs_recent_rows():
    with pytest.raises(ValueError, match="no labelled PostgreSQL rows"):
        retrain_split(HISTORY, pd.Series([], dtype="datetime64[ns, UTC]"))


def _history() -> pd.DataFrame:
    from simulator.generator import generate_history

    return generate_history(days=3, customers=30, fraud_ratio=0.05, seed=3)


def test_history_rows_keep_labels_and_skip_rows_already_in_the_database():
    history = _history()
    skip = set(history["transaction_id"].head(5))
    data = history_rows(history, skip)

    assert len(data.transactions) == len(history) - 5
    assert not set(data.transactions["transaction_id"]) & skip
    assert (data.transactions[ORIGIN_COLUMN] == "history").all()
    assert data.transactions["label"].sum() == history["is_fraud"].iloc[5:].sum()
    assert len(data.labels) == history["label_time"].iloc[5:].notna().sum()


def test_combine_orders_by_time_and_counts():
    history = _history()
    late, early = history_rows(history.iloc[100:], set()), history_rows(history.iloc[:100], set())
    database = TrainingData(early.transactions.assign(**{ORIGIN_COLUMN: "database", "label": np.nan}), early.labels)
    data = combine([late, database])

    assert data.transactions["transaction_time"].is_monotonic_increasing
    assert data.counts() == {"rows": len(history), "labelled_rows": len(history) - 100,
                             "fraud_rows": int(history["is_fraud"].iloc[100:].sum()), "database_rows": 100,
                             "history_rows": len(history) - 100}
