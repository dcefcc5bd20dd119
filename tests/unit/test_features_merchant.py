"""Merchant fraud rate from late labels: point in time, delay, relabelling, snapshot = as-of."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.definition import MERCHANT_PRIOR_FRAUD_RATE, MERCHANT_PRIOR_STRENGTH
from features.merchant import (
    merchant_features_point_in_time,
    merchant_risk_snapshot,
    normalize_labels,
    smoothed_fraud_rate,
)

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2024-05-01", tz="UTC")
PRIOR = MERCHANT_PRIOR_FRAUD_RATE


def at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def transactions(specs: list[tuple[str, str, float]]) -> pd.DataFrame:
    """(transaction_id, merchant_id, hours after T0) -> raw rows of distinct users."""
    return pd.DataFrame(
        {
            "transaction_id": [s[0] for s in specs],
            "user_id": [f"u-{s[0]}" for s in specs],
            "amount": 20.0,
            "currency": "USD",
            "merchant": [f"name of {s[1]}" for s in specs],
            "merchant_id": [s[1] for s in specs],
            "transaction_time": [at(s[2]) for s in specs],
            "country": "US",
            "transaction_type": "purchase",
        }
    )


def labels(specs: list[tuple[str, int, float]]) -> pd.DataFrame:
    """(transaction_id, is_fraud, hours after T0 when labelled)."""
    return pd.DataFrame(
        {
            "transaction_id": [s[0] for s in specs],
            "is_fraud": [s[1] for s in specs],
            "labeled_at": [at(s[2]) for s in specs],
        }
    )


def rates(txns: pd.DataFrame, lbls: pd.DataFrame, delay=dt.timedelta(0)) -> pd.DataFrame:
    return merchant_features_point_in_time(txns, normalize_labels(lbls, txns), delay)


def test_smoothing_starts_at_the_prior_and_moves_with_counts():
    assert smoothed_fraud_rate(0, 0) == pytest.approx(PRIOR)
    assert smoothed_fraud_rate(3, 10) == pytest.approx(
        (3 + MERCHANT_PRIOR_STRENGTH * PRIOR) / (10 + MERCHANT_PRIOR_STRENGTH)
    )
    assert smoothed_fraud_rate(50, 50) > smoothed_fraud_rate(5, 5) > PRIOR


def test_a_later_fraud_label_is_invisible_to_earlier_transactions():
    txns = transactions([("a", "M1", 0), ("b", "M1", 10), ("c", "M1", 20), ("d", "M1", 30)])
    planted = labels([("a", 1, 25)])  # fraud on "a", known only at hour 25
    out = rates(txns, planted)
    assert out["merchant_label_count"].tolist() == [0, 0, 0, 1]
    assert out["merchant_fraud_rate"].iloc[:3].tolist() == pytest.approx([PRIOR] * 3)
    assert out["merchant_fraud_rate"].iloc[3] == pytest.approx(smoothed_fraud_rate(1, 1))


def test_a_label_known_exactly_at_the_transaction_time_is_usable():
    txns = transactions([("a", "M1", 0), ("b", "M1", 5)])
    out = rates(txns, labels([("a", 1, 5)]))
    assert out["merchant_label_count"].tolist() == [0, 1]


def test_label_delay_postpones_usability():
    txns = transactions([("a", "M1", 0), ("b", "M1", 5), ("c", "M1", 7)])
    out = rates(txns, labels([("a", 1, 4)]), delay=dt.timedelta(hours=2))
    assert out["merchant_label_count"].tolist() == [0, 0, 1]
    seconds = rates(txns, labels([("a", 1, 4)]), delay=2 * 3600.0)
    pd.testing.assert_frame_equal(out, seconds)


def test_labels_count_only_for_their_merchant():
    txns = transactions([("a", "M1", 0), ("b", "M2", 1), ("c", "M1", 10), ("d", "M2", 10)])
    out = rates(txns, labels([("a", 1, 2), ("b", 0, 2)]))
    assert out["merchant_label_count"].tolist() == [0, 0, 1, 1]
    assert out["merchant_fraud_rate"].iloc[2] == pytest.approx(smoothed_fraud_rate(1, 1))
    assert out["merchant_fraud_rate"].iloc[3] == pytest.approx(smoothed_fraud_rate(0, 1))


def test_a_relabelled_transaction_counts_once_with_its_latest_label():
    txns = transactions([("a", "M1", 0), ("b", "M1", 5), ("c", "M1", 15)])
    lbls = pd.concat([labels([("a", 0, 1)]), labels([("a", 1, 10)])], ignore_index=True)
    out = merchant_features_point_in_time(txns, normalize_labels(lbls, txns), 0)
    assert out["merchant_label_count"].tolist() == [0, 1, 1]
    assert out["merchant_fraud_rate"].tolist() == pytest.approx(
        [PRIOR, smoothed_fraud_rate(0, 1), smoothed_fraud_rate(1, 1)]
    )


def test_snapshot_equals_the_point_in_time_lookup_at_the_same_moment():
    rng = np.random.default_rng(5)
    specs = [(f"t{i:03d}", f"M{rng.integers(0, 4)}", float(i)) for i in range(60)]
    txns = transactions(specs)
    lbls = labels([(s[0], int(rng.random() < 0.3), s[2] + float(rng.integers(1, 30))) for s in specs[::2]])
    known = normalize_labels(lbls, txns)
    as_of = at(45)
    snapshot = merchant_risk_snapshot(known, as_of, label_delay=3600).set_index("merchant_key")
    probe = transactions([(f"p{m}", f"M{m}", 45.0) for m in range(4)])
    pit = merchant_features_point_in_time(probe, known, 3600)
    for row, merchant in zip(pit.itertuples(), probe["merchant_id"], strict=True):
        expected_count = snapshot["merchant_label_count"].get(merchant, 0.0)
        expected_rate = snapshot["merchant_fraud_rate"].get(merchant, PRIOR)
        assert row.merchant_label_count == expected_count
        assert row.merchant_fraud_rate == pytest.approx(expected_rate, rel=1e-12)


def test_compute_features_uses_history_labels_point_in_time():
    txns = transactions([("a", "M1", 0), ("b", "M1", 10), ("c", "M1", 30)])
    txns["is_fraud"] = [1, 0, 0]
    txns["label_time"] = [at(20), pd.NaT, at(40)]  # "b" never labelled; "c" labelled later
    out = compute_features(txns, label_delay=0)
    assert out["merchant_label_count"].tolist() == [0, 0, 1]
    none = compute_features(txns, use_history_labels=False)
    assert none["merchant_label_count"].tolist() == [0, 0, 0]


def test_labels_may_be_booleans_with_their_own_merchant_columns():
    lbls = labels([("a", 1, 0)]).assign(is_fraud=[True], merchant="Shop", merchant_id=[None])
    known = normalize_labels(lbls)
    assert known["merchant_key"].tolist() == ["Shop"] and known["is_fraud"].tolist() == [1]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (labels([("a", 1, 0)]).drop(columns="is_fraud"), "is_fraud"),
        (labels([("a", 1, 0)]).drop(columns="labeled_at"), "labeled_at"),
        (labels([("a", 7, 0)]), "is_fraud must be 0/1"),
        (labels([("zzz", 1, 0)]), "not in transactions"),
    ],
)
def test_bad_labels_raise_named_errors(frame, message):
    with pytest.raises(ValueError, match=message):
        normalize_labels(frame, transactions([("a", "M1", 0)]))


def test_negative_delay_is_rejected():
    txns = transactions([("a", "M1", 0)])
    with pytest.raises(ValueError, match="label_delay"):
        rates(txns, labels([("a", 1, 0)]), delay=-5)
