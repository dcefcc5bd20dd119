"""compute_features: the contract (rows, order, columns), stateless values, invariances, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.definition import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    FEATURE_DESCRIPTIONS,
    NUMERIC_FEATURES,
    STATEFUL_FEATURES,
    STATELESS_FEATURES,
    UNKNOWN_CATEGORY,
)
from features.merchant import MERCHANT_FEATURES
from features.user_state import USER_FEATURES
from simulator.generator import generate_history
from tests.feature_oracle import UserState, user_window_features

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(days=10, customers=40, seed=11)


def test_definition_is_consistent():
    assert FEATURE_COLUMNS == NUMERIC_FEATURES + CATEGORICAL_FEATURES
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    assert set(FEATURE_DESCRIPTIONS) == set(FEATURE_COLUMNS)
    assert all(FEATURE_DESCRIPTIONS[name].strip() for name in FEATURE_COLUMNS)
    assert set(STATELESS_FEATURES) | set(USER_FEATURES) | set(MERCHANT_FEATURES) == set(FEATURE_COLUMNS)
    assert set(STATEFUL_FEATURES) == set(USER_FEATURES) | set(MERCHANT_FEATURES)


def test_output_keeps_rows_order_index_and_columns(history):
    sample = history.sample(frac=1.0, random_state=2).set_index(np.arange(len(history)) * 3)
    before = sample.copy()
    out = compute_features(sample)
    pd.testing.assert_frame_equal(sample, before)  # caller's frame untouched
    assert out.index.equals(sample.index)
    assert list(out.columns) == list(sample.columns) + [c for c in FEATURE_COLUMNS if c != "amount"]
    pd.testing.assert_frame_equal(out[sample.columns], sample)
    assert out[NUMERIC_FEATURES].dtypes.eq("float64").all()
    assert out[NUMERIC_FEATURES].notna().all().all() and np.isfinite(out[NUMERIC_FEATURES]).all().all()
    assert out[CATEGORICAL_FEATURES].map(lambda v: isinstance(v, str)).all().all()


def test_shuffled_input_gives_the_same_features(history):
    straight = compute_features(history)
    shuffled = compute_features(history.sample(frac=1.0, random_state=9)).loc[history.index]
    pd.testing.assert_frame_equal(straight[FEATURE_COLUMNS], shuffled[FEATURE_COLUMNS])


def test_batch_equals_replaying_each_user_event_by_event(history):
    batch = compute_features(history, use_history_labels=False)
    parts = []
    for _, events in history.groupby("user_id", sort=False):
        state = None
        for position in range(len(events)):
            part, state = user_window_features(state, events.iloc[[position]])
            state = UserState.from_record(state.to_record())
            parts.append(part)
    replayed = pd.concat(parts).loc[history.index]
    np.testing.assert_allclose(replayed[USER_FEATURES].to_numpy(), batch[USER_FEATURES].to_numpy(), rtol=1e-9)


def test_stateless_values():
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b"],
            "user_id": ["u1", "u2"],
            "amount": [50.0, 3500.0],
            "currency": ["USD", None],
            "merchant": ["Walmart", "Unknown Merchant"],
            "transaction_time": ["2024-06-05T14:00:00", "2024-06-08T02:00:00+00:00"],  # Wed, Sat
            "country": ["US", "RU"],
            "transaction_type": ["purchase", "purchase"],
            "merchant_category": ["retail", "  "],
        }
    )
    out = compute_features(frame)
    assert out["hour"].tolist() == [14, 2]
    assert out["is_night"].tolist() == [0, 1]
    assert out["is_weekend"].tolist() == [0, 1]
    assert out["log_amount"].tolist() == pytest.approx(np.log1p([50.0, 3500.0]).tolist())
    assert out["cat_currency"].tolist() == ["USD", UNKNOWN_CATEGORY]
    assert out["cat_merchant_category"].tolist() == ["retail", UNKNOWN_CATEGORY]
    assert out["cat_channel"].tolist() == [UNKNOWN_CATEGORY] * 2  # column absent altogether
    assert out["cat_country"].tolist() == ["US", "RU"]


def test_renaming_a_merchant_with_an_id_changes_no_feature(history):
    renamed = history.assign(merchant=history["merchant"] + " (renamed)")
    pd.testing.assert_frame_equal(
        compute_features(history)[FEATURE_COLUMNS], compute_features(renamed)[FEATURE_COLUMNS]
    )


def test_ids_and_names_are_not_features():
    assert not {"transaction_id", "user_id", "merchant", "merchant_id", "device_id"} & set(FEATURE_COLUMNS)


def _raw(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b"],
            "user_id": ["u1", "u1"],
            "amount": [5.0, 6.0],
            "currency": "USD",
            "merchant": "Shop",
            "transaction_time": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 11:00"], utc=True),
            "country": "US",
            "transaction_type": "purchase",
        }
    )
    return frame.assign(**overrides)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_raw().drop(columns="country"), r"missing required column\(s\) \['country'\]"),
        (_raw(transaction_id=["a", "a"]), "transaction_id has 1 duplicate"),
        (_raw(amount=[5.0, -1.0]), "amount must be a finite number >= 0"),
        (_raw(amount=[5.0, np.inf]), "amount must be a finite number >= 0"),
        (_raw(user_id=["u1", None]), "user_id has 1 missing"),
        (
            _raw(transaction_time=[pd.Timestamp("2024-01-01", tz="UTC"), pd.NaT]),
            "transaction_time has 1 missing",
        ),
        (
            _raw(transaction_time=["2024-01-01", "not a time"]),
            "transaction_time has values that are not timestamps",
        ),
        (_raw(hour=[1, 2]), "already has feature column"),
    ],
)
def test_bad_input_raises_a_named_error(frame, message):
    with pytest.raises(ValueError, match=message):
        compute_features(frame)
