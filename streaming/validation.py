"""Parse and validate Kafka records with THE message contract (fraudops.contract.messages), in Spark.

Valid rows come out with the parsed fields; rejected rows keep their reason, the raw value cut
to a bound and their topic/partition/offset for the quarantine table. Nothing is dropped here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from fraudops.contract.messages import REJECT_REASON_COLUMN, spark_validated_schema, validate_messages_frame
from streaming.sinks import MAX_RAW_VALUE_CHARS

KAFKA_META_DDL = [
    ("kafka_topic", "string"), ("kafka_partition", "int"), ("kafka_offset", "long"),
    ("produced_at", "timestamp"), ("raw_value", "string"), ("raw_size_bytes", "int"),
]


def validated_schema():
    """Spark schema of :func:`validate_kafka_chunks` output."""
    from pyspark.sql.types import StructField, _parse_datatype_string

    schema = spark_validated_schema()
    for name, ddl in KAFKA_META_DDL:
        schema = schema.add(StructField(name, _parse_datatype_string(ddl), nullable=True))
    return schema


def _raw_text(value) -> str | None:
    if value is None:
        return None
    text = bytes(value)[: MAX_RAW_VALUE_CHARS * 4].decode("utf-8", errors="replace")
    return text[:MAX_RAW_VALUE_CHARS].replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL


def validate_kafka_chunks(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas body: Kafka columns (value, topic, partition, offset, timestamp) in, parsed out."""
    for chunk in chunks:
        parsed = validate_messages_frame(chunk["value"].tolist())
        rejected = parsed[REJECT_REASON_COLUMN].notna().to_numpy()
        parsed["kafka_topic"] = chunk["topic"].to_numpy()
        parsed["kafka_partition"] = chunk["partition"].astype("int32").to_numpy()
        parsed["kafka_offset"] = chunk["offset"].astype("int64").to_numpy()
        parsed["produced_at"] = pd.to_datetime(chunk["timestamp"], utc=True).reset_index(drop=True)
        sizes = chunk["value"].map(lambda v: 0 if v is None else len(v))
        parsed["raw_size_bytes"] = sizes.astype("int32").to_numpy()
        raw = pd.Series([None] * len(chunk), dtype="object")
        if rejected.any():
            raw[rejected] = chunk["value"][rejected].map(_raw_text).to_numpy()
        parsed["raw_value"] = raw.to_numpy()
        yield parsed


def parse_kafka_stream(kafka_df):
    """Kafka source DataFrame -> validated rows (valid and rejected, see ``reject_reason``)."""
    return kafka_df.select("value", "topic", "partition", "offset", "timestamp").mapInPandas(
        validate_kafka_chunks, validated_schema()
    )
