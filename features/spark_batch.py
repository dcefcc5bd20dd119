"""Spark batch path: the same features as features.batch.compute_features, computed on Spark.

Per bucket of users (``pmod(xxhash64(user_id), BATCH_BUCKETS)``), groupBy(bucket).applyInPandas
replays the bucket's users' whole histories through features.batch.user_features (the
vectorised core, features.user_state.window_features, one pass over many users) and
features.stateless; per merchant, a cogroup of transactions and labels applies
features.merchant.merchant_features_point_in_time. For histories too large for one pandas
frame; results equal compute_features (row order aside).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.batch import user_features
from features.definition import FEATURE_COLUMNS, REQUIRED_INPUT_COLUMNS
from features.merchant import (
    DEFAULT_LABEL_DELAY,
    LABEL_TIME_COLUMNS,
    MERCHANT_FEATURES,
    merchant_features_point_in_time,
    normalize_labels,
)
from features.spark_columns import (
    check_utc_session,
    merchant_key_column,
    require_columns,
    schema_with_features,
    select_output,
    with_optional_spark_columns,
)
from features.stateless import stateless_features
from features.user_state import event_arrays

_KEY = "_merchant_key"
# each group holds whole histories of a bucket of users
BATCH_BUCKETS = 256
BUCKET_COLUMN = "_features_user_bucket"
USER_AND_STATELESS_FEATURES = [name for name in FEATURE_COLUMNS if name not in MERCHANT_FEATURES]


def _user_and_stateless(events: pd.DataFrame) -> pd.DataFrame:
    """``events`` (amount as float) plus the stateless and per-user features of its rows."""
    arrays = event_arrays(events)
    stateless = stateless_features(events, arrays["time_us"])
    added = pd.concat([stateless.drop(columns="amount"), user_features(events, arrays)], axis=1)
    return pd.concat([events.assign(amount=stateless["amount"].to_numpy()), added], axis=1)


def _user_features(df: DataFrame) -> DataFrame:
    schema = schema_with_features(df.schema, USER_AND_STATELESS_FEATURES)
    columns = schema.fieldNames()

    def per_bucket(events: pd.DataFrame) -> pd.DataFrame:
        return _user_and_stateless(events.drop(columns=BUCKET_COLUMN))[columns]

    bucket = F.pmod(F.xxhash64("user_id"), F.lit(BATCH_BUCKETS))
    return df.withColumn(BUCKET_COLUMN, bucket).groupBy(BUCKET_COLUMN).applyInPandas(per_bucket, schema)


def _labels_with_merchant(
    df: DataFrame, labels_df: DataFrame | None, use_history_labels: bool
) -> DataFrame | None:
    """Labels with their transaction's merchant columns, or None when there are none."""
    if labels_df is not None:
        require_columns(labels_df, ["transaction_id", "is_fraud"], "labels_df")
        time_column = next((c for c in LABEL_TIME_COLUMNS if c in labels_df.columns), None)
        if time_column is None:
            raise ValueError(f"labels_df needs one of {list(LABEL_TIME_COLUMNS)}; has {labels_df.columns}")
        merchants = df.select("transaction_id", "merchant", "merchant_id", "transaction_time")
        return labels_df.select(
            "transaction_id",
            F.col("is_fraud").cast("int").alias("is_fraud"),
            F.col(time_column).alias("labeled_at"),
        ).join(merchants, "transaction_id", "inner")
    if use_history_labels and "is_fraud" in df.columns:
        # no label_time column: labelled when it happened (as features.batch.known_labels)
        label_time = "label_time" if "label_time" in df.columns else "transaction_time"
        return df.select(
            "transaction_id",
            F.col("is_fraud").cast("int").alias("is_fraud"),
            F.col(label_time).alias("labeled_at"),
            "merchant",
            "merchant_id",
            "transaction_time",
        )
    return None


def _merchant_features(df: DataFrame, labels: DataFrame | None, label_delay) -> DataFrame:
    """Per merchant (all its transactions and labels in one group): the training function."""
    keyed = df.withColumn(_KEY, merchant_key_column())
    schema = schema_with_features(keyed.schema, MERCHANT_FEATURES)
    columns = schema.fieldNames()
    if labels is None:  # transaction counts still apply; every fraud count is 0

        def unlabelled(transactions: pd.DataFrame) -> pd.DataFrame:
            feats = merchant_features_point_in_time(transactions, None, label_delay)
            return pd.concat([transactions, feats], axis=1)[columns]

        return keyed.groupBy(_KEY).applyInPandas(unlabelled, schema).drop(_KEY)

    def per_merchant(transactions: pd.DataFrame, merchant_labels: pd.DataFrame) -> pd.DataFrame:
        known = normalize_labels(merchant_labels) if len(merchant_labels) else None
        feats = merchant_features_point_in_time(transactions, known, label_delay)
        return pd.concat([transactions, feats], axis=1)[columns]

    # Fresh attributes: columns shared with the left side's lineage would be dropped by cogroup.
    fresh = labels.select(*[F.col(c).alias(c) for c in labels.columns])
    right = fresh.withColumn(_KEY, merchant_key_column()).groupBy(_KEY)
    return keyed.groupBy(_KEY).cogroup(right).applyInPandas(per_merchant, schema).drop(_KEY)


def add_features_spark(
    df: DataFrame,
    labels_df: DataFrame | None = None,
    label_delay=DEFAULT_LABEL_DELAY,
    use_history_labels: bool = True,
) -> DataFrame:
    """Return ``df`` (a batch DataFrame of raw transactions) with FEATURE_COLUMNS added.

    Args:
        df: raw transactions (transaction_time a TimestampType; session time zone UTC).
        labels_df: (transaction_id, is_fraud, labeled_at or label_time), or None to use the
            history's own is_fraud/label_time when ``use_history_labels``. Labels of
            transactions not in ``df`` have no known merchant and are ignored.
        label_delay: a label is usable at labeled_at + label_delay (timedelta or seconds).
        use_history_labels: see ``labels_df``.

    Raises:
        ValueError: a required column is missing or the session time zone is not UTC.
    """
    require_columns(df, REQUIRED_INPUT_COLUMNS, "df")
    check_utc_session(df)
    input_columns = list(df.columns)
    featured = _user_features(with_optional_spark_columns(df))
    labels = _labels_with_merchant(featured, labels_df, use_history_labels)
    featured = _merchant_features(featured, labels, label_delay)
    return select_output(featured, input_columns)
