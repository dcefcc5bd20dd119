"""Streaming features: per-user state in Spark's state store, bucketed, the same core inside.

:func:`add_stream_features` takes a streaming DataFrame of parsed transactions and returns it
with FEATURE_COLUMNS added. Users are hashed into ``buckets`` buckets
(``pmod(xxhash64(user_id), buckets)``); per bucket, a transformWithStateInPandas processor keeps a
:class:`features.user_state.BucketState` (the per-user states of the bucket's users as flat
arrays, one BinaryType ValueState, RocksDB provider) and calls
:func:`features.user_state.users_window_features` once on the micro-batch's events of all the
bucket's users: bit-identical to :func:`features.user_state.user_window_features` called user by
user, and the same core (window_features) the training path replays history through. Per key
(bucket) the framework and state round trips cost a few ms, paid per bucket instead of per user.
Users whose newest event is older than the bucket's newest event minus the seen-items horizon
and a day are pruned from the state (their content is logically expired, so pruning never
changes a feature); there is no TTL.

Changing the number of buckets re-partitions the users: start from a new checkpoint (a
checkpoint of the former per-user processor, keyed by user_id, cannot be resumed either).
:func:`features_for_user_events` (one user) stays for the benchmark's per-user comparison.

Use (the streaming job, with foreachBatch sinks):
    features_df = add_stream_features(parsed_df, merchant_risk_df)
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle

from features.definition import FEATURE_COLUMNS, REQUIRED_INPUT_COLUMNS, SEEN_HORIZON_SECONDS
from features.merchant import MERCHANT_FEATURES
from features.spark_columns import (
    BUCKET_STATE_SCHEMA,
    attach_merchant_risk,
    check_utc_session,
    require_columns,
    schema_with_features,
    select_output,
    with_optional_spark_columns,
)
from features.stateless import epoch_micros, stateless_features
from features.user_state import BucketState, UserState, user_window_features, users_window_features

STATE_TTL_MS = (SEEN_HORIZON_SECONDS + 86_400) * 1_000  # per-user state TTL (bench.stage_profile)
PROCESSOR_FEATURES = [name for name in FEATURE_COLUMNS if name not in MERCHANT_FEATURES]
DEFAULT_BUCKETS = 32
BUCKET_COLUMN = "_features_user_bucket"


def features_for_user_events(
    prior_state: UserState | None, events: pd.DataFrame
) -> tuple[pd.DataFrame, UserState]:
    """``events`` plus the user and stateless features, and the user's new state."""
    user, new_state = user_window_features(prior_state, events)
    return _with_stateless(events, user), new_state


def _with_stateless(events: pd.DataFrame, user: pd.DataFrame) -> pd.DataFrame:
    """``events`` (amount cleaned) + the stateless features + the user features ``user``."""
    stateless = stateless_features(events, epoch_micros(events["transaction_time"]))
    added = pd.concat([stateless.drop(columns="amount"), user], axis=1)
    return pd.concat([events.assign(amount=stateless["amount"].to_numpy()), added], axis=1)


def features_for_bucket_events(
    prior_state: BucketState | None, events: pd.DataFrame
) -> tuple[pd.DataFrame, BucketState]:
    """:func:`features_for_user_events` for the events of many users at once."""
    user, new_state = users_window_features(prior_state, events)
    return _with_stateless(events, user), new_state


def user_bucket(buckets: int):
    """The Spark column that hashes user_id into ``buckets`` buckets (the state's key)."""
    return F.pmod(F.xxhash64("user_id"), F.lit(buckets))


class BucketFeatureProcessor(StatefulProcessor):
    """transformWithStateInPandas processor: one BucketState per bucket of user_ids."""

    def __init__(self, output_columns: list[str]):
        self.output_columns = output_columns

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getValueState("bucket_state", BUCKET_STATE_SCHEMA)

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues) -> Iterator[pd.DataFrame]:
        events = pd.concat(list(rows), ignore_index=True)
        prior = BucketState.from_bytes(self.state.get()[0]) if self.state.exists() else None
        out, new_state = features_for_bucket_events(prior, events)
        self.state.update((new_state.to_bytes(),))
        yield out[self.output_columns]

    def close(self) -> None:
        pass


def add_stream_features(
    stream_df: DataFrame, merchant_risk_df: DataFrame | None = None, buckets: int = DEFAULT_BUCKETS
) -> DataFrame:
    """Add FEATURE_COLUMNS to a streaming DataFrame of parsed transactions.

    Args:
        stream_df: streaming (or batch) DataFrame with the raw columns of the message contract
            (transaction_time a TimestampType); other columns are carried through unchanged.
            Events of one user should arrive in event-time order across micro-batches (Kafka
            keyed by user_id gives that); deduplicate replays before this step.
        merchant_risk_df: a snapshot from features.merchant.merchant_risk_snapshot as a Spark
            DataFrame (stream-static broadcast join), or None: merchant features at the prior;
            then refresh them per micro-batch with features.spark_columns.attach_merchant_risk.
        buckets: number of state keys the users are hashed into (part of the state layout:
            changing it needs a new checkpoint).

    Returns:
        A DataFrame with the input columns followed by FEATURE_COLUMNS (outputMode append).

    Raises:
        ValueError: a required column is missing, the session time zone is not UTC, or
            ``buckets`` < 1.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    require_columns(stream_df, REQUIRED_INPUT_COLUMNS, "stream_df")
    check_utc_session(stream_df)
    input_columns = list(stream_df.columns)
    prepared = with_optional_spark_columns(stream_df)
    schema = schema_with_features(prepared.schema, PROCESSOR_FEATURES)
    bucketed = prepared.withColumn(BUCKET_COLUMN, user_bucket(buckets))
    featured = bucketed.groupBy(BUCKET_COLUMN).transformWithStateInPandas(
        statefulProcessor=BucketFeatureProcessor(schema.fieldNames()),
        outputStructType=schema,
        outputMode="Append",
        timeMode="ProcessingTime",
    )
    return select_output(attach_merchant_risk(featured, merchant_risk_df), input_columns)
