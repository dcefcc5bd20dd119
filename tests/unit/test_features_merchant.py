"""Merchant windowed features: the definition (brute-force oracle), point in time with late
labels, windows that fade, relabelling, and the stream's snapshot equal to training."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.definition import MERCHANT_PRIOR_FRAUD_RATE, MERCHANT_WINDOWS_SECONDS
from features.merchant import (
    MERCHANT_FEATURES,
    merchant_features_point_in_time,
    merchant_snapshot,
    normalize_labels,
    smoothed_fraud_rate,
    snapshot_merchant_features,
)

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2024-05-01", tz="UTC")
PRIOR = MERCHANT_PRIOR_FRAUD_RATE
DAY = 24.0


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


def features(txns: pd.DataFrame, lbls: pd.DataFrame | None, delay=dt.timedelta(0)) -> pd.DataFrame:
    known = None if lbls is None else normalize_labels(lbls, txns)
    return merchant_features_point_in_time(txns, known, delay)


def oracle(txns: pd.DataFrame, lbls: pd.DataFrame, delay: pd.Timedelta) -> pd.DataFrame:
    """The definition, one transaction and one window at a time."""
    rows = []
    for _, row in txns.iterrows():
        end = row["transaction_time"] - delay
        same = txns[txns["merchant_id"] == row["merchant_id"]]
        values = {}
        for suffix, seconds in MERCHANT_WINDOWS_SECONDS.items():
            inside = same[(same["transaction_time"] >= end - pd.Timedelta(seconds=seconds))
                          & (same["transaction_time"] < end)]
            frauds = 0
            for tid in inside["transaction_id"]:
                known = lbls[(lbls["transaction_id"] == tid) & (lbls["labeled_at"] <= end)]
                if len(known):
                    latest = known.sort_values(["labeled_at", "is_fraud"]).iloc[-1]
                    frauds += int(latest["is_fraud"])
            values[f"merchant_txn_count_{suffix}"] = float(len(inside))
            values[f"merchant_fraud_count_{suffix}"] = float(frauds)
            values[f"merchant_fraud_rate_{suffix}"] = float(smoothed_fraud_rate(frauds, len(inside)))
        rows.append(values)
    return pd.DataFrame(rows, index=txns.index)[MERCHANT_FEATURES]


def random_world(seed: int, n: int = 150):
    rng = np.random.default_rng(seed)
    hours = np.sort(rng.uniform(0, 45 * DAY, n)).round(1)  # ties on purpose
    txns = transactions([(f"t{i:03d}", f"M{rng.integers(0, 4)}", h) for i, h in enumerate(hours)])
    specs = []
    for i in rng.choice(n, size=n // 2, replace=False):
        specs.append((f"t{i:03d}", int(rng.random() < 0.4), hours[i] + rng.uniform(0, 10 * DAY)))
        if rng.random() < 0.2:  # relabelled later (analyst, then chargeback)
            specs.append((f"t{i:03d}", int(rng.random() < 0.5), specs[-1][2] + rng.uniform(0, 5 * DAY)))
    return txns, labels(specs)


@pytest.mark.parametrize(("seed", "delay_hours"), [(1, 0.0), (2, 30.0), (3, 7 * DAY)])
def test_vectorised_features_equal_the_definition(seed, delay_hours):
    txns, lbls = random_world(seed)
    delay = pd.Timedelta(hours=delay_hours)
    out = features(txns, lbls, delay)
    pd.testing.assert_frame_equal(out, oracle(txns, lbls, delay), check_exact=True)
    assert out["merchant_fraud_count_30d"].max() > 0


def test_a_planted_later_label_never_changes_the_feature_at_t():
    txns = transactions([("a", "M1", 0), ("b", "M1", 10), ("c", "M1", 20), ("d", "M1", 30), ("e", "M1", 40)])
    delay = pd.Timedelta(hours=4)
    without = features(txns, None, delay)
    planted = features(txns, labels([("a", 1, 26)]), delay)  # known at 26, usable from t = 30
    pd.testing.assert_frame_equal(planted.iloc[:3], without.iloc[:3], check_exact=True)
    assert planted["merchant_fraud_count_1d"].tolist() == [0, 0, 0, 0, 0]  # "a" left the 1d window
    assert planted["merchant_fraud_count_7d"].tolist() == [0, 0, 0, 1, 1]
    assert planted.loc[3, "merchant_fraud_rate_7d"] == smoothed_fraud_rate(1, 3)


def test_a_label_known_exactly_at_the_window_end_is_used():
    txns = transactions([("a", "M1", 0), ("b", "M1", 5)])
    out = features(txns, labels([("a", 1, 3)]), pd.Timedelta(hours=2))
    assert out["merchant_fraud_count_1d"].tolist() == [0, 1]


def test_with_no_delay_a_transaction_never_counts_itself():
    txns = transactions([("a", "M1", 0), ("b", "M1", 0), ("c", "M1", 1)])
    out = features(txns, labels([("a", 1, 0), ("b", 1, 0)]), 0)
    assert out["merchant_txn_count_1d"].tolist() == [0, 0, 2]
    assert out["merchant_fraud_count_1d"].tolist() == [0, 0, 2]


def test_windows_fade_after_a_compromise_ends():
    compromise = [(f"f{i}", "M1", i * 2.0) for i in range(24)]  # two days of fraud at M1
    later = [("x30", "M1", 6 * DAY), ("x35", "M1", 35 * DAY), ("x40", "M1", 40 * DAY), ("y40", "M2", 40 * DAY)]
    txns = transactions(compromise + later)
    lbls = labels([(tid, 1, hours + 12) for tid, _, hours in compromise])
    out = features(txns, lbls, pd.Timedelta(hours=12)).set_index(txns["transaction_id"])
    assert out.loc["x30", "merchant_fraud_count_7d"] == 24 and out.loc["x30", "merchant_fraud_rate_7d"] > 0.5
    assert out.loc["x30", "merchant_fraud_count_1d"] == 0  # the 1d window has already faded
    faded = out.loc["x40"]
    assert faded["merchant_fraud_count_30d"] == 0 and faded["merchant_txn_count_30d"] == 1
    assert faded["merchant_fraud_rate_30d"] == pytest.approx(smoothed_fraud_rate(0, 1))
    assert faded["merchant_fraud_rate_30d"] <= PRIOR


def test_a_relabelled_transaction_counts_with_its_latest_known_label():
    txns = transactions([("a", "M1", 0), ("b", "M1", 5), ("c", "M1", 15), ("d", "M1", 25)])
    lbls = labels([("a", 1, 1), ("a", 0, 10), ("a", 1, 20)])  # fraud, false positive, chargeback
    out = features(txns, lbls, 0)
    assert out["merchant_fraud_count_7d"].tolist() == [0, 1, 0, 1]
    assert out["merchant_txn_count_7d"].tolist() == [0, 1, 2, 3]


def test_merchant_identity_is_id_else_name():
    txns = transactions([("a", "M1", 0), ("b", "M1", 1), ("c", "M1", 2)])
    txns.loc[2, "merchant_id"] = None  # "c" is identified by its name, another merchant
    out = features(txns, None, 0)
    assert out["merchant_txn_count_1d"].tolist() == [0, 1, 0]


def test_no_labels_counts_transactions_at_the_prior_rate():
    txns = transactions([("a", "M1", 0), ("b", "M1", 1)])
    out = features(txns, None, 0)
    assert out["merchant_txn_count_30d"].tolist() == [0, 1]
    assert out["merchant_fraud_rate_30d"].tolist() == [PRIOR, smoothed_fraud_rate(0, 1)]


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_the_streams_snapshot_equals_training_bit_for_bit(seed):
    txns, lbls = random_world(seed, n=200)
    delay, valid_for = pd.Timedelta(hours=6), pd.Timedelta(hours=3)
    as_of = at(30 * DAY + 0.05)
    # what the job can read at as_of: transactions and labels up to then (delay >= valid_for)
    seen = txns[txns["transaction_time"] <= as_of]
    known = normalize_labels(lbls, txns)
    known = known[known["labeled_us"] <= as_of.value // 1000]
    snapshot = merchant_snapshot(seen, known, as_of, delay, valid_for)
    probe = transactions([(f"p{k}", f"M{k % 4}", 30 * DAY + 0.05 + h) for k, h in enumerate(np.linspace(0, 3, 25))])
    streamed = snapshot_merchant_features(probe, snapshot)
    everything = pd.concat([txns, probe], ignore_index=True)
    trained = merchant_features_point_in_time(everything, normalize_labels(lbls, txns), delay).iloc[len(txns):]
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True), trained.reset_index(drop=True), check_exact=True)
    assert trained["merchant_fraud_count_30d"].max() > 0
    assert len(snapshot) < 2 * 4 * 6 + 50  # compact: a base row per merchant and counter, few events


def test_a_stale_snapshot_clamps_to_its_validity_and_none_is_the_prior():
    txns = transactions([("a", "M1", 0), ("b", "M1", 30)])
    snapshot = merchant_snapshot(txns.iloc[:1], None, at(1), 0, dt.timedelta(hours=1))
    late = snapshot_merchant_features(transactions([("z", "M1", 30 * DAY)]), snapshot)
    assert late["merchant_txn_count_30d"].tolist() == [1]  # as at the end of its validity
    empty = snapshot_merchant_features(txns, None)
    assert (empty["merchant_txn_count_30d"] == 0).all() and (empty["merchant_fraud_rate_7d"] == PRIOR).all()


def test_compute_features_uses_history_labels_point_in_time():
    txns = transactions([("a", "M1", 0), ("b", "M1", 10), ("c", "M1", 30)])
    txns["is_fraud"] = [1, 0, 0]
    txns["label_time"] = [at(20), pd.NaT, at(40)]  # "b" never labelled; "c" labelled later
    out = compute_features(txns, label_delay=0)
    assert out["merchant_fraud_count_7d"].tolist() == [0, 0, 1]
    none = compute_features(txns, use_history_labels=False)
    assert none["merchant_fraud_count_7d"].tolist() == [0, 0, 0]
    assert none["merchant_txn_count_7d"].tolist() == [0, 1, 2]


def test_a_history_without_label_times_is_labelled_when_it_happened():
    txns = transactions([("a", "M1", 0), ("b", "M1", 1), ("c", "M1", 3)]).assign(is_fraud=[1, 0, 0])
    out = compute_features(txns, label_delay=pd.Timedelta(hours=2))
    assert out["merchant_fraud_count_1d"].tolist() == [0, 0, 1]  # "a" usable 2 h after it happened
    assert out["merchant_txn_count_1d"].tolist() == [0, 0, 1]


def test_labels_may_be_booleans_with_their_own_merchant_columns():
    lbls = labels([("a", 1, 0)]).assign(is_fraud=[True], merchant="Shop", merchant_id=[None],
                                        transaction_time=[at(-1)])
    known = normalize_labels(lbls)
    assert known["merchant_key"].tolist() == ["Shop"] and known["is_fraud"].tolist() == [1]
    assert known["txn_us"].tolist() == [at(-1).value // 1000]


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
        features(txns, labels([("a", 1, 0)]), delay=-5)


@pytest.mark.parametrize("seed", [7, 8])
def test_the_snapshots_index_equals_counting_every_event(seed):
    """MerchantSnapshot.counts_at (indexed once, a binary search per query) gives the integer
    sums counts_at gives from every count event, at every probed time of its range and at its
    ends, for known, unknown and repeated merchants; the index is not pickled with it."""
    import pickle

    from features.merchant import counts_at

    txns, lbls = random_world(seed, n=300)
    as_of = at(30 * DAY + 0.05)
    known = normalize_labels(lbls, txns)
    snapshot = merchant_snapshot(txns, known[known["labeled_us"] <= as_of.value // 1000], as_of,
                                 pd.Timedelta(hours=6), pd.Timedelta(hours=3))
    rng = np.random.default_rng(seed)
    keys = np.array([f"M{k}" for k in rng.integers(0, 6, 400)] + ["never-seen", "M0", "M0"], dtype=object)
    e_us = np.concatenate([rng.integers(snapshot.start_us, snapshot.end_us + 1, 400),
                           [snapshot.start_us, snapshot.start_us, snapshot.end_us]])
    expected = counts_at(snapshot.events, keys, e_us)
    np.testing.assert_array_equal(snapshot.counts_at(keys, e_us), expected)
    assert expected[:400].sum() > 0  # the probe reaches merchants with counts
    restored = pickle.loads(pickle.dumps(snapshot))  # noqa: S301 - our own object, as Spark broadcasts it
    assert "_index" not in restored.__dict__ and restored.events.equals(snapshot.events)
    np.testing.assert_array_equal(restored.counts_at(keys, e_us), expected)
