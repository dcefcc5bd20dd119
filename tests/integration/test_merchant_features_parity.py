"""Merchant features: training (pandas), the Spark batch path and the stream's snapshot read
from a real PostgreSQL are bit-identical; a planted later label changes nothing before it is
known on either batch path. Small data: the machine's 2 cores are shared."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.merchant import (
    MERCHANT_FEATURES,
    merchant_features_point_in_time,
    normalize_labels,
    snapshot_merchant_features,
)
from features.spark_batch import add_features_spark
from features.stateless import merchant_key
from fraudops.contract.messages import TRANSACTION_COLUMNS
from simulator.generator import generate_history
from simulator.independent import generate_independent
from streaming.merchant_risk import MerchantRiskCache, read_snapshot
from tests.monitoring_support import (
    count_rows,
    create_schema,
    drop_schema,
    insert_labels,
    insert_rows,
    schema_targets,
)

pytestmark = pytest.mark.integration

DELAY = pd.Timedelta(hours=2)
VALID_FOR = pd.Timedelta(minutes=2)


def assert_merchant_features_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exact equality (not a tolerance), rows matched on transaction_id."""
    actual = actual.set_index("transaction_id").loc[expected["transaction_id"], MERCHANT_FEATURES]
    np.testing.assert_array_equal(actual.to_numpy("float64"), expected[MERCHANT_FEATURES].to_numpy("float64"))


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    frame = generate_history(days=8, customers=40, fraud_ratio=0.03, seed=7)
    frame = frame.assign(transaction_time=frame["transaction_time"].astype("datetime64[us, UTC]"),
                         label_time=frame["transaction_time"].astype("datetime64[us, UTC]") + pd.Timedelta(hours=9))
    frame.loc[frame.index[1::13], "merchant_id"] = None
    return frame.reset_index(drop=True)


def test_spark_batch_path_equals_training_bit_for_bit(spark, history):
    expected = compute_features(history, label_delay=DELAY)
    actual = add_features_spark(spark.createDataFrame(history), label_delay=DELAY).toPandas()
    assert_merchant_features_equal(actual, expected)
    assert expected["merchant_fraud_count_7d"].max() > 0  # labels were used
    unlabelled = add_features_spark(spark.createDataFrame(history[TRANSACTION_COLUMNS]), label_delay=DELAY).toPandas()
    assert_merchant_features_equal(unlabelled, compute_features(history[TRANSACTION_COLUMNS], label_delay=DELAY))
    no_label_time = history.drop(columns=["label_time", "fraud_scenario"])  # labelled when they happened
    expected = compute_features(no_label_time, label_delay=DELAY)
    assert_merchant_features_equal(add_features_spark(spark.createDataFrame(no_label_time), label_delay=DELAY).toPandas(),
                                   expected)
    assert expected["merchant_fraud_count_1d"].max() > 0


def test_a_planted_later_label_is_invisible_before_it_is_known_on_both_batch_paths(spark, history):
    raw = history[TRANSACTION_COLUMNS]
    keys = merchant_key(raw)
    busy = raw["transaction_time"].groupby(keys).transform("max") > raw["transaction_time"] + pd.Timedelta(days=2)
    target = raw[busy].iloc[0]
    known_at = target["transaction_time"] + pd.Timedelta(hours=20)
    planted = pd.DataFrame({"transaction_id": [target["transaction_id"]], "is_fraud": [1], "labeled_at": [known_at]})
    pandas_out = compute_features(raw, labels=planted, label_delay=DELAY)
    spark_out = add_features_spark(spark.createDataFrame(raw), spark.createDataFrame(planted), DELAY).toPandas()
    assert_merchant_features_equal(spark_out, pandas_out)
    without = compute_features(raw, label_delay=DELAY)
    usable_from = known_at + DELAY
    before = raw["transaction_time"] < usable_from
    pd.testing.assert_frame_equal(pandas_out.loc[before, MERCHANT_FEATURES], without.loc[before, MERCHANT_FEATURES])
    after = (keys == keys[target.name]) & ~before & (raw["transaction_time"] < target["transaction_time"] + DELAY
                                                     + pd.Timedelta(days=7))
    assert after.any() and (pandas_out.loc[after, "merchant_fraud_count_7d"] == 1).all()


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"merchant_{unique_name}")
    yield name
    drop_schema(pg_conn, name)



def _table_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[TRANSACTION_COLUMNS].copy()
    rows["transaction_time"] = pd.to_datetime(rows["transaction_time"], utc=True)
    rows["scored_at"] = rows["transaction_time"] + pd.Timedelta(seconds=1)
    return rows


@pytest.mark.parametrize("generator", ["simulator", "independent"])
def test_the_streams_snapshot_from_postgresql_equals_training(settings, pg_conn, schema, generator):
    as_of = pd.Timestamp(datetime.now(UTC)).floor("s")
    if generator == "simulator":
        past = generate_history(days=35, customers=30, fraud_ratio=0.03, seed=3,
                                start=(as_of - pd.Timedelta(days=35)).to_pydatetime())
    else:
        past = generate_independent(days=35, cards=60, seed=3, messy=False,
                                    start=(as_of - pd.Timedelta(days=35)).to_pydatetime())
    past = past.assign(transaction_time=past["transaction_time"].astype("datetime64[us, UTC]"),
                       label_time=past["transaction_time"].astype("datetime64[us, UTC]") + pd.Timedelta(hours=5))
    insert_rows(pg_conn, schema, "transactions", _table_rows(past))
    insert_labels(pg_conn, schema, past, only_fraud=False, known_by=as_of.to_pydatetime())  # known by now
    zero = count_rows(pg_conn, schema, "transactions", "amount = 0")
    assert zero == int((past["amount"] == 0).sum())  # zero-amount verifications are stored (0004)
    snapshot = read_snapshot(schema_targets(settings, schema), as_of, DELAY, VALID_FOR)

    # events the stream scores during the snapshot's validity, at the merchants of the history
    rng = np.random.default_rng(0)
    # half of them merchants with a labelled fraud (a random sample may miss every one: the history
    # depends on the time of day it starts at), half any merchant of the history
    keys = ["merchant", "merchant_id"]
    defrauded = past[past["is_fraud"] == 1].drop_duplicates("merchant")[keys]
    assert len(defrauded) > 0, "the history holds no fraud to check the fraud counts on"
    merchants = pd.concat([defrauded.sample(10, random_state=1, replace=True),
                           past.drop_duplicates("merchant")[keys].sample(10, random_state=1, replace=True)])
    probe = pd.DataFrame({
        "transaction_id": [f"P{i}" for i in range(len(merchants))], "user_id": "u", "amount": 1.0,
        "currency": "EUR", "merchant": merchants["merchant"].to_numpy(), "merchant_id": merchants["merchant_id"].to_numpy(),
        "transaction_time": as_of + pd.to_timedelta(rng.uniform(0, VALID_FOR.total_seconds(), len(merchants)), unit="s"),
        "country": "FR", "transaction_type": "purchase"})
    streamed = snapshot_merchant_features(probe, snapshot)

    known = past[past["label_time"] <= as_of]
    labels = normalize_labels(known[["transaction_id", "is_fraud", "label_time"]], past)
    everything = pd.concat([past[TRANSACTION_COLUMNS], probe], ignore_index=True)
    trained = merchant_features_point_in_time(everything, labels, DELAY).iloc[len(past):]
    np.testing.assert_array_equal(streamed.to_numpy("float64"), trained.to_numpy("float64"))
    assert (trained["merchant_txn_count_30d"] > 0).mean() > 0.5 and trained["merchant_fraud_count_30d"].max() > 0


def test_the_cache_builds_the_snapshot_the_stream_reads(spark, settings, pg_conn, schema):
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    past = generate_history(days=3, customers=20, fraud_ratio=0.05, seed=4,
                            start=(now - pd.Timedelta(days=3)).to_pydatetime())
    insert_rows(pg_conn, schema, "transactions", _table_rows(past))
    cache = MerchantRiskCache(spark, schema_targets(settings, schema), refresh_seconds=60, label_delay=DELAY)
    cache.refresh()  # what the background thread does every refresh_seconds
    snapshot = cache.current.value
    assert snapshot.label_delay_us == DELAY.value // 1000 and snapshot.end_us - snapshot.start_us == 120_000_000
    probe = past[TRANSACTION_COLUMNS].head(30).assign(transaction_time=now + pd.Timedelta(seconds=30))
    expected = snapshot_merchant_features(probe, snapshot)
    assert expected["merchant_txn_count_1d"].max() > 0
