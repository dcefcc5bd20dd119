"""Training features and the stream's features are equal for the same events.

The stream computes per-user features from the online feature store (a real Redis: the stack's
feature-store instance, a key prefix per test) exactly as the scoring job's pass does
(features.stream.stream_features, then remember_events): in time order or shuffled inside
micro-batches, laid out across "partitions" (by transaction_id, as the seed's producer keys
messages), with late events, and replayed after a crash. The Spark batch path and the
merchant snapshot lookup are checked against pandas too. Small data: the 2 cores are shared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES
from features.merchant import MERCHANT_FEATURES, merchant_snapshot, normalize_labels, smoothed_fraud_rate
from features.online import FeatureStore
from features.spark_batch import add_features_spark
from features.spark_columns import merchant_key_column
from features.stateless import merchant_key
from features.stream import remember_events, stream_features
from fraudops.contract.messages import TRANSACTION_COLUMNS
from simulator.generator import generate_history

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

RAW_COLUMNS = list(TRANSACTION_COLUMNS)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    frame = generate_history(days=6, customers=10, seed=5)
    # Spark reads microsecond timestamps; a few ties and missing optionals exercise the edge cases.
    frame = frame.assign(transaction_time=frame["transaction_time"].astype("datetime64[us, UTC]"))
    frame.loc[frame.index[1::17], "merchant_id"] = None
    return frame.reset_index(drop=True)


# the stream's per-user and stateless features (its merchant features: the snapshot test below)
NOT_MERCHANT = [name for name in NUMERIC_FEATURES if name not in MERCHANT_FEATURES]


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame, numeric=NUMERIC_FEATURES) -> None:
    """Rows matched on transaction_id; numerics within a tiny tolerance, categoricals equal."""
    assert sorted(actual["transaction_id"]) == sorted(expected["transaction_id"])
    actual = actual.set_index("transaction_id").loc[expected["transaction_id"]]
    np.testing.assert_allclose(
        actual[numeric].to_numpy("float64"),
        expected[numeric].to_numpy("float64"),
        rtol=1e-9,
        atol=1e-9,
    )
    assert (actual[CATEGORICAL_FEATURES].to_numpy() == expected[CATEGORICAL_FEATURES].to_numpy()).all()


def stream(store: FeatureStore, batches: list[pd.DataFrame], partitions: int = 1) -> pd.DataFrame:
    """Each micro-batch as the scoring pass handles it: features of all its events, then remember.

    ``partitions``: the batch's events are laid out partition after partition, split by
    transaction_id as Kafka partitions keyed by transaction_id are (what the pass's one task
    reads), so a user's events of one batch come in any order from several partitions."""
    out = []
    for batch in batches:
        part = pd.util.hash_array(batch["transaction_id"].to_numpy(object)) % partitions
        laid_out = pd.concat([batch[part == k] for k in range(partitions)])
        out.append(stream_features(laid_out, store))
        remember_events(store, laid_out)
    return pd.concat(out, ignore_index=True)


def time_slices(frame: pd.DataFrame, count: int, seed: int) -> list[pd.DataFrame]:
    """Consecutive time slices of ``frame`` (in time order), each shuffled."""
    edges = np.array_split(np.arange(len(frame)), count)
    return [frame.iloc[rows].sample(frac=1.0, random_state=seed + k) for k, rows in enumerate(edges)]


def with_late_arrivals(batches: list[pd.DataFrame], seed: int) -> list[pd.DataFrame]:
    """A third of the events of each batch that has a later event of the same user in the same
    batch arrive one batch late (after that later event was scored)."""
    rng = np.random.default_rng(seed)
    out = [b.copy() for b in batches]
    for k in range(len(out) - 1):
        batch = out[k]
        newest = batch.groupby("user_id")["transaction_time"].transform("max")
        late = (batch["transaction_time"] < newest) & (rng.random(len(batch)) < 0.33)
        out[k + 1] = pd.concat([batch[late], out[k + 1]]).sample(frac=1.0, random_state=k)
        out[k] = batch[~late]
    return out


def test_stream_features_equal_training_in_time_order_shuffled_and_split(store, history):
    expected = compute_features(history, use_history_labels=False)
    streamed = stream(store, time_slices(history[RAW_COLUMNS], 4, seed=1), partitions=3)
    assert list(streamed.columns) == RAW_COLUMNS + [c for c in FEATURE_COLUMNS if c != "amount"]
    assert streamed["user_txn_count_30d"].max() > 0  # history was read from the store
    assert_same_features(streamed, expected, NOT_MERCHANT)


def test_a_late_event_gets_trainings_features_of_the_events_known_when_it_arrives(store, history):
    """Documented case: an event scored before an earlier event of its user arrived keeps its
    features; every event equals training on the events that had arrived by its micro-batch."""
    batches = with_late_arrivals(time_slices(history[RAW_COLUMNS], 5, seed=2), seed=3)
    assert sum(len(b) for b in batches) == len(history)
    streamed = stream(store, batches, partitions=2).set_index("transaction_id")
    late_seen = 0
    for k, batch in enumerate(batches):
        arrived = pd.concat(batches[: k + 1])
        arrived = arrived.sort_values(["transaction_time", "transaction_id"]).reset_index(drop=True)
        expected = compute_features(arrived, use_history_labels=False)
        expected = expected[expected["transaction_id"].isin(batch["transaction_id"])]
        assert_same_features(streamed.loc[expected["transaction_id"]].reset_index(), expected, NOT_MERCHANT)
        if k:
            newest_before = pd.concat(batches[:k]).groupby("user_id")["transaction_time"].max()
            late_seen += int((batch["transaction_time"] < batch["user_id"].map(newest_before)).sum())
    assert late_seen > 0, "no late event: nothing was tested"


def test_a_replayed_batch_gets_the_same_features_bit_for_bit_and_adds_nothing(store, history):
    batches = time_slices(history[RAW_COLUMNS], 3, seed=4)
    first = stream(store, batches[:2])
    sizes = {key: store.client.zcard(key) for key in store.client.scan_iter(f"{store.prefix}*")}
    replayed = stream(store, batches[1:2])  # the last batch again, as after a crash
    assert {key: store.client.zcard(key) for key in sizes} == sizes
    original = first.set_index("transaction_id").loc[replayed["transaction_id"]]
    assert (original[NUMERIC_FEATURES].to_numpy() == replayed[NUMERIC_FEATURES].to_numpy()).all()
    assert (original[CATEGORICAL_FEATURES].to_numpy() == replayed[CATEGORICAL_FEATURES].to_numpy()).all()


def test_spark_batch_path_equals_pandas_with_point_in_time_labels(spark, history):
    # Labels known 2 hours after each transaction, so many are usable within the short history.
    fast = history.assign(label_time=history["transaction_time"] + pd.Timedelta(hours=2))
    fast.loc[fast.index[::25], "is_fraud"] = 1  # enough frauds in a small history
    expected = compute_features(fast)  # labels from is_fraud/label_time, default delay
    actual = add_features_spark(spark.createDataFrame(fast)).toPandas()
    assert_same_features(actual, expected)
    assert expected["merchant_fraud_count_30d"].max() > 0  # labels were used, point in time


def test_a_planted_later_label_is_invisible_to_earlier_rows_on_both_batch_paths(spark, history):
    keys = merchant_key(history)
    revisited = history["transaction_time"].groupby(keys).transform("max") > history[
        "transaction_time"
    ] + pd.Timedelta(hours=7)
    target = history[revisited].iloc[0]  # its merchant has transactions after the label is known
    same_merchant = keys == keys[target.name]
    planted = pd.DataFrame(
        {
            "transaction_id": [target["transaction_id"]],
            "is_fraud": [1],
            "labeled_at": [target["transaction_time"] + pd.Timedelta(hours=6)],
        }
    )
    pandas_out = compute_features(history, labels=planted, label_delay=0)
    spark_out = add_features_spark(
        spark.createDataFrame(history), spark.createDataFrame(planted), 0
    ).toPandas()
    assert_same_features(spark_out, pandas_out)
    known_from = planted["labeled_at"].iloc[0]
    before = same_merchant & (history["transaction_time"] < known_from)
    after = same_merchant & (history["transaction_time"] >= known_from)
    assert (pandas_out.loc[before, "merchant_fraud_count_30d"] == 0).all()
    assert (pandas_out.loc[~same_merchant, "merchant_fraud_count_30d"] == 0).all()
    assert after.any() and (pandas_out.loc[after, "merchant_fraud_count_30d"] == 1).all()
    assert pandas_out.loc[after, "merchant_fraud_rate_30d"].tolist() == pytest.approx(
        smoothed_fraud_rate(1, pandas_out.loc[after, "merchant_txn_count_30d"]).tolist()
    )


def test_stream_merchant_features_equal_training_within_the_snapshot_validity(store, history):
    """The stream evaluates the merchant snapshot at each event's time: exact (equal to
    training) for events in [as_of, as_of + valid_for] when label_delay >= valid_for."""
    delay = valid_for = pd.Timedelta(hours=12)  # wide enough for a few dozen events of the history
    times = history["transaction_time"]
    as_of = times.iloc[len(history) // 2]
    inside = (times >= as_of) & (times <= as_of + valid_for)
    labels = normalize_labels(history[["transaction_id", "is_fraud", "label_time", "merchant", "merchant_id",
                                       "transaction_time"]])
    snapshot = merchant_snapshot(history[RAW_COLUMNS], labels, as_of, delay, valid_for)
    streamed = stream_features(history.loc[inside, RAW_COLUMNS], store, snapshot)
    expected = compute_features(history, label_delay=delay).loc[inside]
    assert inside.sum() > 0 and expected["merchant_txn_count_30d"].max() > 0
    np.testing.assert_array_equal(streamed[MERCHANT_FEATURES].to_numpy(), expected[MERCHANT_FEATURES].to_numpy())


def test_the_merchant_key_twins_agree(spark, history):
    sdf = spark.createDataFrame(history[RAW_COLUMNS])
    spark_keys = sdf.select("transaction_id", merchant_key_column().alias("key")).toPandas()
    pandas_keys = pd.Series(merchant_key(history).to_numpy(), index=history["transaction_id"])
    assert (
        spark_keys.set_index("transaction_id")["key"] == pandas_keys.loc[spark_keys["transaction_id"]]
    ).all()
