"""Batch (training) and streaming (scoring) features are equal for the same sequence.

One simulated history goes through features.batch.compute_features and through a real Spark
Structured Streaming query (Parquet files read one per micro-batch, transformWithStateInPandas
with the RocksDB state store, a restart from the checkpoint halfway), and through the Spark
batch path; the features must agree. Small data: the machine's 2 cores are shared.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES
from features.merchant import merchant_risk_snapshot, normalize_labels, smoothed_fraud_rate
from features.spark_batch import add_features_spark
from features.spark_columns import attach_merchant_risk, merchant_key_column
from features.stateless import merchant_key
from features.stream import add_stream_features
from fraudops.contract.messages import TRANSACTION_COLUMNS, spark_message_schema
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


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Rows matched on transaction_id; numerics within a tiny tolerance, categoricals equal."""
    assert sorted(actual["transaction_id"]) == sorted(expected["transaction_id"])
    actual = actual.set_index("transaction_id").loc[expected["transaction_id"]]
    np.testing.assert_allclose(
        actual[NUMERIC_FEATURES].to_numpy("float64"),
        expected[NUMERIC_FEATURES].to_numpy("float64"),
        rtol=1e-9,
        atol=1e-9,
    )
    assert (actual[CATEGORICAL_FEATURES].to_numpy() == expected[CATEGORICAL_FEATURES].to_numpy()).all()


def write_micro_batches(frame: pd.DataFrame, folder: Path, first: int, chunks: list[np.ndarray]) -> None:
    """One Parquet file per chunk, modification times in chunk order (the file source's order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, rows in enumerate(chunks, start=first):
        path = folder / f"part-{number:03d}.parquet"
        strings = {c: "string" for c in RAW_COLUMNS if c not in ("amount", "transaction_time")}
        frame.iloc[rows][RAW_COLUMNS].astype(strings).to_parquet(path, index=False)
        os.utime(path, (1_000_000 + number, 1_000_000 + number))


def run_until_idle(stream_df, checkpoint: Path, collected: list[pd.DataFrame], name: str) -> int:
    """Run the query until all files are processed; return the number of non-empty micro-batches."""

    def collect(batch_df, batch_id):
        collected.append(batch_df.toPandas())

    query = (
        stream_df.writeStream.queryName(name)
        .foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .start()
    )
    try:
        query.processAllAvailable()
        return sum(1 for p in query.recentProgress if p["numInputRows"] > 0)
    finally:
        query.stop()


def test_streaming_features_equal_batch_features(spark, history, tmp_path, unique_name):
    expected = compute_features(history, use_history_labels=False)
    chunks = np.array_split(np.arange(len(history)), 4)  # history is in time order
    schema = spark_message_schema(parsed_time=True)
    source, checkpoint = tmp_path / "source", tmp_path / "checkpoint"
    collected: list[pd.DataFrame] = []

    write_micro_batches(history, source, 0, chunks[:2])
    stream = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))
    first_run = run_until_idle(add_stream_features(stream), checkpoint, collected, f"{unique_name}_a")
    # Restart from the checkpoint: the per-user state must come back from the state store.
    write_micro_batches(history, source, 2, chunks[2:])
    stream = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))
    second_run = run_until_idle(add_stream_features(stream), checkpoint, collected, f"{unique_name}_b")

    assert (first_run, second_run) == (2, 2)
    streamed = pd.concat(collected, ignore_index=True)
    assert list(streamed.columns) == RAW_COLUMNS + [c for c in FEATURE_COLUMNS if c != "amount"]
    assert streamed["user_txn_count_30d"].max() > 0  # state was carried, not trivially empty
    assert_same_features(streamed, expected)


def test_spark_batch_path_equals_pandas_with_point_in_time_labels(spark, history):
    # Labels known 2 hours after each transaction, so many are usable within the short history.
    fast = history.assign(label_time=history["transaction_time"] + pd.Timedelta(hours=2))
    expected = compute_features(fast)  # labels from is_fraud/label_time, default delay
    actual = add_features_spark(spark.createDataFrame(fast)).toPandas()
    assert_same_features(actual, expected)
    assert expected["merchant_label_count"].max() > 1  # labels were used, point in time


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
    assert (pandas_out.loc[before, "merchant_label_count"] == 0).all()
    assert (pandas_out.loc[~same_merchant, "merchant_label_count"] == 0).all()
    assert after.any() and (pandas_out.loc[after, "merchant_label_count"] == 1).all()
    assert pandas_out.loc[after, "merchant_fraud_rate"].tolist() == pytest.approx(
        [smoothed_fraud_rate(1, 1)] * int(after.sum())
    )


def test_stream_joins_the_merchant_snapshot(spark, history, tmp_path, unique_name):
    labels = history[["transaction_id", "is_fraud", "label_time", "merchant", "merchant_id"]]
    snapshot = merchant_risk_snapshot(normalize_labels(labels), as_of=history["label_time"].max())
    assert len(snapshot) > 0
    schema = spark_message_schema(parsed_time=True)
    source = tmp_path / "source"
    write_micro_batches(history, source, 0, [np.arange(len(history))])
    stream = spark.readStream.schema(schema).parquet(str(source))
    collected: list[pd.DataFrame] = []
    run_until_idle(
        add_stream_features(stream, spark.createDataFrame(snapshot)), tmp_path / "ck", collected, unique_name
    )
    streamed = pd.concat(collected, ignore_index=True)
    by_merchant = snapshot.set_index("merchant_key")
    keys = merchant_key(streamed)
    expected_rate = keys.map(by_merchant["merchant_fraud_rate"]).fillna(smoothed_fraud_rate(0, 0))
    expected_count = keys.map(by_merchant["merchant_label_count"]).fillna(0.0)
    np.testing.assert_allclose(streamed["merchant_fraud_rate"], expected_rate, rtol=1e-12)
    np.testing.assert_allclose(streamed["merchant_label_count"], expected_count)


def test_attach_merchant_risk_keeps_column_order_and_merchant_key_twins_agree(spark, history):
    sdf = spark.createDataFrame(history[RAW_COLUMNS]).withColumn("merchant_fraud_rate", merchant_key_column())
    attached = attach_merchant_risk(sdf, None)
    assert attached.columns == sdf.columns + ["merchant_label_count"]
    spark_keys = sdf.select("transaction_id", merchant_key_column().alias("key")).toPandas()
    pandas_keys = pd.Series(merchant_key(history).to_numpy(), index=history["transaction_id"])
    assert (
        spark_keys.set_index("transaction_id")["key"] == pandas_keys.loc[spark_keys["transaction_id"]]
    ).all()
