"""Spark-side helpers shared by the Spark batch path and the streaming path.

Schemas of the feature columns, the merchant identity as a Spark
column (twin of features.stateless.merchant_key). Importing this
module imports pyspark but starts nothing.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS, OPTIONAL_INPUT_COLUMNS


def feature_field(name: str) -> T.StructField:
    """Spark type of a feature column: string for categoricals, double otherwise."""
    return T.StructField(name, T.StringType() if name in CATEGORICAL_FEATURES else T.DoubleType(), True)


def schema_with_features(input_schema: T.StructType, features: list[str]) -> T.StructType:
    """``input_schema`` (amount as double) followed by the ``features`` not already in it."""
    fields = [
        T.StructField("amount", T.DoubleType(), f.nullable) if f.name == "amount" else f
        for f in input_schema.fields
    ]
    names = set(input_schema.fieldNames())
    return T.StructType(fields + [feature_field(name) for name in features if name not in names])


def require_columns(df: DataFrame, columns: list[str], argument: str) -> None:
    """Raise ValueError naming the columns ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{argument} is missing column(s) {missing}; has {df.columns}")


def with_optional_spark_columns(df: DataFrame) -> DataFrame:
    """Add absent optional raw columns as null strings and make amount a double."""
    for name in OPTIONAL_INPUT_COLUMNS:
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast(T.StringType()))
    return df.withColumn("amount", F.col("amount").cast(T.DoubleType()))


def check_utc_session(df: DataFrame) -> None:
    """Raise unless the session time zone is UTC (pandas UDFs read naive times as UTC)."""
    zone = df.sparkSession.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        raise ValueError(
            f"spark.sql.session.timeZone is {zone!r}; the feature code needs UTC "
            "(fraudops.spark_session.build_spark_session sets it)"
        )


def merchant_key_column(columns: list[str] | None = None) -> Column:
    """merchant_id when present, else merchant (same rule as features.stateless.merchant_key).

    Args:
        columns: the DataFrame's columns; without a merchant_id column the name alone is used.
    """
    name = F.col("merchant").cast(T.StringType())
    if columns is not None and "merchant_id" not in columns:
        return name
    return F.coalesce(F.col("merchant_id").cast(T.StringType()), name)


def select_output(df: DataFrame, input_columns: list[str]) -> DataFrame:
    """The input columns (in order) followed by FEATURE_COLUMNS (in order)."""
    extra = [name for name in FEATURE_COLUMNS if name not in input_columns]
    return df.select(*input_columns, *extra)
