"""Training data from elsewhere: invalid rows dropped with a count and a reason, never a crash;
duplicates, naive/aware/string timestamps, missing optional columns, zero amounts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.batch import clean_transactions, compute_features, compute_training_features
from features.definition import FEATURE_COLUMNS
from simulator.independent import generate_independent

pytestmark = pytest.mark.unit


def rows(n: int = 6, **overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in range(n)],
            "user_id": ["u1", "u2"] * (n // 2),
            "amount": [10.0 + i for i in range(n)],
            "currency": "EUR",
            "merchant": "Shop",
            "merchant_id": "M1",
            "transaction_time": pd.date_range("2024-03-01", periods=n, freq="h", tz="UTC"),
            "country": "FR",
            "transaction_type": "purchase",
            "is_fraud": [0] * n,
        }
    )
    for name, values in overrides.items():
        frame[name] = values
    return frame


def test_valid_rows_pass_unchanged_and_zero_amounts_are_valid():
    frame = rows(amount=[0.0, 0, 5.0, 1.0, 2.0, 3.0])
    clean, report = clean_transactions(frame)
    assert report.rows_out == 6 and report.dropped == {}
    assert clean["amount"].tolist() == [0.0, 0.0, 5.0, 1.0, 2.0, 3.0]
    featured = compute_features(clean)
    assert featured.loc[0, "log_amount"] == 0.0


@pytest.mark.parametrize(
    ("column", "values", "reason"),
    [
        ("amount", [1.0, -5.0, 1, 1, 1, 1], "negative:amount"),
        ("amount", [1.0, np.inf, 1, 1, 1, 1], "non_finite:amount"),
        ("amount", [1.0, None, 1, 1, 1, 1], "missing_field:amount"),
        ("amount", [1.0, "12.5", 1, 1, 1, 1], "wrong_type:amount"),
        ("amount", [1.0, 5e7, 1, 1, 1, 1], "absurd_value:amount"),
        ("currency", ["EUR", "XYZ", "EUR", "EUR", "EUR", "EUR"], "unknown_currency"),
        ("country", ["FR", "ZZ", "FR", "FR", "FR", "FR"], "unknown_country"),
        ("transaction_type", ["purchase", "refund", "purchase", "purchase", "purchase", "purchase"],
         "bad_transaction_type"),
        ("user_id", ["u", " ", "u", "u", "u", "u"], "missing_field:user_id"),
        ("merchant", ["m", "x" * 500, "m", "m", "m", "m"], "oversized_field:merchant"),
        ("transaction_time", ["2024-03-01T00:00:00", "not a time", "2024-03-01T02:00:00",
                              "2024-03-01T03:00:00", "2024-03-01T04:00:00", "2024-03-01T05:00:00"], "unparseable_time"),
        ("transaction_time", ["2024-03-01T00:00:00", "1970-01-01T00:00:00", "2024-03-01T02:00:00",
                              "2024-03-01T03:00:00", "2024-03-01T04:00:00", "2024-03-01T05:00:00"], "time_out_of_range"),
        ("is_fraud", [0, 7, 0, 0, 0, 0], "bad_is_fraud"),
    ],
)
def test_an_invalid_row_is_dropped_with_its_reason(column, values, reason):
    frame = rows(**{column: values})
    clean, report = clean_transactions(frame)
    assert report.rows_in == 6 and report.rows_out == 5 and report.rows_dropped == 1
    assert report.dropped == {reason: 1} and report.examples == {reason: ["T1"]}
    assert "T1" not in set(clean["transaction_id"])
    compute_features(clean)  # the kept rows always featurize


def test_duplicate_ids_keep_the_first_valid_row():
    frame = rows(transaction_id=["A", "A", "B", "B", "C", "A"], amount=[1.0, 2.0, -1.0, 3.0, 4.0, 5.0])
    clean, report = clean_transactions(frame)
    assert clean["transaction_id"].tolist() == ["A", "B", "C"]
    assert clean["amount"].tolist() == [1.0, 3.0, 4.0]  # B's first row was invalid: its second is kept
    assert report.dropped == {"duplicate_transaction_id": 2, "negative:amount": 1}


def test_naive_aware_and_string_times_all_mean_the_same_instants():
    aware = rows()
    naive = rows(transaction_time=aware["transaction_time"].dt.tz_localize(None))
    paris = rows(transaction_time=aware["transaction_time"].dt.tz_convert("Europe/Paris"))
    strings = rows(transaction_time=[t.isoformat() if i % 2 else t.tz_localize(None).isoformat()
                                     for i, t in enumerate(aware["transaction_time"])])
    expected = compute_training_features(aware)[0][FEATURE_COLUMNS]
    for frame in (naive, paris, strings):
        featured, report = compute_training_features(frame)
        assert report.rows_out == 6
        assert str(featured["transaction_time"].dt.tz) == "UTC"
        pd.testing.assert_frame_equal(featured[FEATURE_COLUMNS], expected)
    notes = compute_training_features(naive)[1].notes
    assert notes == {"naive_transaction_time_read_as_utc": 6, "labels_known_at_transaction_time": 6}


def test_missing_optional_columns_numeric_ids_and_label_words():
    frame = rows().drop(columns=["merchant_id"]).assign(user_id=[1, 2, 1, 2, 1, 2], is_fraud=["yes", "no", "True", "0", 0, 1.0])
    featured, report = compute_training_features(frame)
    assert report.dropped == {}
    assert featured["user_id"].tolist() == ["1", "2", "1", "2", "1", "2"]
    assert featured["is_fraud"].tolist() == [1, 0, 1, 0, 0, 1]
    assert (featured["cat_channel"] == "unknown").all() and featured["user_txn_count_24h"].max() > 0


def test_a_missing_required_column_is_a_named_error():
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['amount'\]"):
        clean_transactions(rows().drop(columns="amount"))


def test_labels_of_dropped_rows_are_ignored_and_counted():
    frame = rows(amount=[1.0, -1.0, 1, 1, 1, 1]).drop(columns="is_fraud")
    labels = pd.DataFrame({"transaction_id": ["T0", "T1"], "is_fraud": [1, 1],
                           "labeled_at": pd.Timestamp("2024-03-01T00:30", tz="UTC")})
    featured, report = compute_training_features(frame, labels=labels, label_delay=0)
    assert report.notes["labels_of_dropped_rows"] == 1 and len(featured) == 5
    assert featured["merchant_fraud_count_1d"].tolist() == [0, 1, 1, 1, 1]


def test_the_independent_generators_messy_delivery_trains_and_reports():
    messy = generate_independent(days=6, cards=300, seed=2)
    featured, report = compute_training_features(messy, label_delay=7 * 86_400)
    assert report.dropped["duplicate_transaction_id"] == int(messy["transaction_id"].duplicated().sum())
    assert report.dropped["negative:amount"] == int((messy.drop_duplicates("transaction_id")["amount"] < 0).sum())
    assert report.rows_out == len(featured) == messy["transaction_id"].nunique() - report.dropped["negative:amount"]
    assert (featured["amount"] == 0).any() and featured["transaction_id"].is_unique
    json.dumps(report.as_dict())  # loggable as is
